//! Core Kubernetes kinds strait reads: `Service`, `EndpointSlice`,
//! `Namespace`, `Secret`. Fields strait does not use are accepted and ignored,
//! as objects exported from a cluster carry many.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    #[serde(default)]
    pub ports: Vec<ServicePort>,
    #[serde(default)]
    pub selector: BTreeMap<String, String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// For `type: ExternalName`.
    pub external_name: Option<String>,
    /// The Service's virtual IP: calls to it are calls to the Service.
    #[serde(rename = "clusterIP")]
    pub cluster_ip: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    pub name: Option<String>,
    pub port: i32,
    /// A number or a port name; kept as JSON because Kubernetes allows both.
    pub target_port: Option<serde_json::Value>,
    pub protocol: Option<String>,
    pub app_protocol: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(default)]
    pub conditions: EndpointConditions,
    pub hostname: Option<String>,
    pub target_ref: Option<serde_json::Value>,
    pub zone: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EndpointConditions {
    /// Absent means ready, as in Kubernetes.
    pub ready: Option<bool>,
    pub serving: Option<bool>,
    pub terminating: Option<bool>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EndpointPort {
    pub name: Option<String>,
    pub port: Option<i32>,
    pub protocol: Option<String>,
    pub app_protocol: Option<String>,
}

/// The body of an `EndpointSlice` (its fields sit beside `metadata`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EndpointSliceBody {
    pub address_type: Option<String>,
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    #[serde(default)]
    pub ports: Vec<EndpointPort>,
}

/// The body of a `Secret` (`type`, `data`, `stringData` sit beside `metadata`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretBody {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Base64 values, decoded when used.
    #[serde(default)]
    pub data: BTreeMap<String, String>,
    #[serde(default)]
    pub string_data: BTreeMap<String, String>,
}

impl SecretBody {
    /// A value by key (`data` is base64, `stringData` plain, as
    /// Kubernetes stores them).
    pub fn value(&self, name: &str) -> Result<Vec<u8>, String> {
        use base64::Engine;
        if let Some(text) = self.string_data.get(name) {
            return Ok(text.as_bytes().to_vec());
        }
        let encoded = self
            .data
            .get(name)
            .ok_or_else(|| format!("has no {name}"))?;
        let compact: String = encoded.split_whitespace().collect();
        base64::engine::general_purpose::STANDARD
            .decode(compact)
            .map_err(|e| format!("{name} is not base64: {e}"))
    }

    /// The PEM certificate chain and key of a `kubernetes.io/tls` Secret.
    pub fn tls_pair(&self) -> Result<(Vec<u8>, Vec<u8>), String> {
        Ok((self.value("tls.crt")?, self.value("tls.key")?))
    }
}

/// The body of a `ConfigMap` (CA bundles for client-certificate validation).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapBody {
    #[serde(default)]
    pub data: BTreeMap<String, String>,
}

/// Label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A text given inline (`type: Inline`, `inline`) or kept in a ConfigMap of
/// the referring object's namespace (`type: ValueRef`, `valueRef`), under
/// a key the referring field names — Envoy Gateway's shape.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InlineOrRef {
    #[serde(rename = "type")]
    pub kind: String,
    pub inline: Option<String>,
    pub value_ref: Option<LocalObjectRef>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalObjectRef {
    #[serde(default)]
    pub group: String,
    pub kind: String,
    pub name: String,
}
