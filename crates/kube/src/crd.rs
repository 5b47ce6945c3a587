//! The CustomResourceDefinitions of the `policy.strait.dev` kinds, made
//! from the very types strait reads them with (kube's `CustomResource`
//! derive in `strait-config`), so the API server accepts exactly what
//! strait understands.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use strait_config::apischema::ApiSchemaPolicy;
use strait_config::auth::SecurityPolicy;
use strait_config::ratelimit::RateLimitPolicy;
use strait_config::security::{AuthorizationPolicy, PeerAuthentication};
use strait_config::telemetry::TelemetryPolicy;
use strait_config::traffic::{BackendTrafficPolicy, BodyTransform, DirectResponse, FaultInjection};

/// Every CRD strait defines.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        BackendTrafficPolicy::crd(),
        FaultInjection::crd(),
        PeerAuthentication::crd(),
        AuthorizationPolicy::crd(),
        TelemetryPolicy::crd(),
        SecurityPolicy::crd(),
        DirectResponse::crd(),
        BodyTransform::crd(),
        RateLimitPolicy::crd(),
        ApiSchemaPolicy::crd(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_policy_kind_has_a_crd_with_the_fields_strait_reads() {
        let crds = crds();
        let names: Vec<&str> = crds
            .iter()
            .map(|c| c.metadata.name.as_deref().unwrap_or(""))
            .collect();
        assert_eq!(
            names,
            [
                "backendtrafficpolicies.policy.strait.dev",
                "faultinjections.policy.strait.dev",
                "peerauthentications.policy.strait.dev",
                "authorizationpolicies.policy.strait.dev",
                "telemetrypolicies.policy.strait.dev",
                "securitypolicies.policy.strait.dev",
                "directresponses.policy.strait.dev",
                "bodytransforms.policy.strait.dev",
                "ratelimitpolicies.policy.strait.dev",
                "apischemapolicies.policy.strait.dev"
            ]
        );
        let schema = serde_json::to_value(&crds[0].spec.versions[0].schema).expect("json");
        let spec = &schema["openAPIV3Schema"]["properties"]["spec"];
        let breaker = &spec["properties"]["circuitBreaker"]["properties"];
        assert_eq!(breaker["maxConnections"]["type"], "integer", "{spec}");
        assert_eq!(
            spec["required"],
            serde_json::json!(["targetRefs"]),
            "{spec}"
        );
        assert_eq!(crds[0].spec.scope, "Namespaced");
    }
}
