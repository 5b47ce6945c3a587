//! strait's Kubernetes side, kept in its own crate so that the data plane
//! and its tests build without kube-rs and k8s-openapi. For now: the CA's
//! check of a proxy's ServiceAccount token with a TokenReview, the way
//! the API server itself would accept it.

pub mod crd;
pub mod inject;
pub mod install;
pub mod source;
pub mod status;

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::api::PostParams;
use kube::Api;
pub use kube::Client;
use strait_identity::service::Authenticator;
use strait_identity::SpiffeId;
use tonic::Status;

/// Asks the API server who a token belongs to.
pub struct TokenReviewer {
    client: Client,
    /// The audience proxies' projected tokens are made for; the review
    /// asks the API server to check it.
    audience: String,
    trust_domain: String,
}

impl TokenReviewer {
    pub fn new(client: Client, audience: &str, trust_domain: &str) -> Self {
        TokenReviewer {
            client,
            audience: audience.to_string(),
            trust_domain: trust_domain.to_string(),
        }
    }

    /// With the credentials kube-rs finds: in the cluster, the pod's
    /// ServiceAccount; outside, `KUBECONFIG` or `~/.kube/config`.
    pub async fn infer(audience: &str, trust_domain: &str) -> Result<Self, String> {
        Ok(Self::new(client().await?, audience, trust_domain))
    }
}

/// A client as `kubectl` would make one: in a pod its ServiceAccount,
/// outside KUBECONFIG.
pub async fn client() -> Result<Client, String> {
    Client::try_default()
        .await
        .map_err(|e| format!("connecting to the Kubernetes API: {e}"))
}

/// `system:serviceaccount:<namespace>:<name>` → (namespace, name).
pub fn service_account_of(username: &str) -> Option<(&str, &str)> {
    let rest = username.strip_prefix("system:serviceaccount:")?;
    let (ns, name) = rest.split_once(':')?;
    (!ns.is_empty() && !name.is_empty() && !name.contains(':')).then_some((ns, name))
}

#[tonic::async_trait]
impl Authenticator for TokenReviewer {
    async fn identify(&self, token: &str) -> Result<SpiffeId, Status> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: Some(vec![self.audience.clone()]),
            },
            ..Default::default()
        };
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let answer = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| Status::unavailable(format!("TokenReview failed: {e}")))?;
        let status = answer
            .status
            .ok_or_else(|| Status::unauthenticated("TokenReview has no status"))?;
        if status.authenticated != Some(true) {
            let why = status.error.unwrap_or_else(|| "not authenticated".into());
            return Err(Status::unauthenticated(format!("token refused: {why}")));
        }
        // An API server that ignores audiences answers none: refuse, as a
        // token for another audience must not prove anything here.
        if !status
            .audiences
            .unwrap_or_default()
            .iter()
            .any(|a| a == &self.audience)
        {
            return Err(Status::unauthenticated(format!(
                "the token is not for audience {:?}",
                self.audience
            )));
        }
        let username = status.user.and_then(|u| u.username).unwrap_or_default();
        let (ns, sa) = service_account_of(&username).ok_or_else(|| {
            Status::unauthenticated(format!("{username:?} is not a ServiceAccount"))
        })?;
        Ok(SpiffeId::new(&self.trust_domain, ns, sa))
    }
}

/// Secret `ns/name` from the API server, read as a folder's would be.
pub async fn secret(
    client: Client,
    ns: &str,
    name: &str,
) -> Result<strait_config::ResourceSet, String> {
    let api: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client, ns);
    let secret = api
        .get(name)
        .await
        .map_err(|e| format!("Secret {ns}/{name}: {e}"))?;
    let mut value = serde_json::to_value(secret).map_err(|e| e.to_string())?;
    value["apiVersion"] = "v1".into();
    value["kind"] = "Secret".into();
    let source = strait_config::Source {
        file: std::path::Path::new(&format!("Secret/{ns}/{name}")).into(),
        doc: 0,
    };
    Ok(strait_config::parse_value(&source, "", value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_of_service_accounts() {
        assert_eq!(
            service_account_of("system:serviceaccount:shop:checkout-api"),
            Some(("shop", "checkout-api"))
        );
        assert_eq!(service_account_of("system:node:worker-1"), None);
        assert_eq!(service_account_of("system:serviceaccount:shop:"), None);
        assert_eq!(service_account_of("alice"), None);
    }
}
