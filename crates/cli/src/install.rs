//! `strait install`: prints the manifests (`strait_kube::install`).

use anyhow::Context;
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct InstallArgs {
    /// Where the control plane and the gateway run.
    #[arg(long, default_value = "strait-system")]
    namespace: String,
    /// The strait image (no image is published: build one holding the
    /// `strait` binary).
    #[arg(long, default_value = concat!("strait:", env!("CARGO_PKG_VERSION")))]
    image: String,
    /// The SPIFFE trust domain.
    #[arg(long, default_value = strait_identity::DEFAULT_TRUST_DOMAIN)]
    trust_domain: String,
    /// Sign with this CA (PEM certificate and key) instead of a new root
    /// made now. Either way its key is in the output: keep it secret.
    #[arg(long, requires = "ca_key")]
    ca_cert: Option<PathBuf>,
    /// The private key of --ca-cert (PEM).
    #[arg(long, requires = "ca_cert")]
    ca_key: Option<PathBuf>,
    /// Print these upstream Gateway API CRDs first (a release's
    /// `standard-install.yaml`, downloaded beforehand).
    #[arg(long, value_name = "FILE")]
    gateway_api_crds: Option<PathBuf>,
}

fn read(path: &PathBuf) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

pub fn run(args: InstallArgs) -> anyhow::Result<std::process::ExitCode> {
    let ca = match (&args.ca_cert, &args.ca_key) {
        (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
        _ => None,
    };
    let gateway_api_crds = match &args.gateway_api_crds {
        Some(file) => {
            strait_kube::install::gateway_api_crds(&file.display().to_string(), &read(file)?)
                .map_err(|e| anyhow::anyhow!(e))?
        }
        None => Vec::new(),
    };
    let opts = strait_kube::install::InstallOptions {
        namespace: args.namespace,
        image: args.image,
        trust_domain: args.trust_domain,
        ca,
        gateway_api_crds,
    };
    let objects = strait_kube::install::manifests(&opts).map_err(|e| anyhow::anyhow!(e))?;
    let text = strait_kube::install::yaml(&objects).map_err(|e| anyhow::anyhow!(e))?;
    std::io::stdout().write_all(text.as_bytes())?;
    eprintln!(
        "strait install: {} objects; the output holds the CA's private key (Secret {}/strait-ca)",
        objects.len(),
        opts.namespace
    );
    Ok(std::process::ExitCode::SUCCESS)
}
