"""Checks `strait install` output with schemas strait does not write.

1. Every built-in object against the Kubernetes 1.33 OpenAPI schemas,
   strictly (an unknown field fails): kubernetes-validate.
2. The policy.strait.dev CRDs: every policy manifest of examples/ must
   pass the CRD's openAPIV3Schema (what the API server would check), and
   known-bad ones must not.

Usage: python3 tests/install-schema.py INSTALL_YAML
"""

import glob
import subprocess
import sys

import jsonschema
import yaml


def openapi_to_jsonschema(node, top=True):
    """A CRD's structural schema as the API server applies it with strict
    field validation (kubectl's default): OpenAPI `nullable` as JSON
    Schema, and an unknown field refused wherever fields are listed (the
    top level's apiVersion, kind and metadata are the API server's)."""
    if isinstance(node, dict):
        out = {k: openapi_to_jsonschema(v, False) for k, v in node.items()}
        if out.pop("nullable", False) and "type" in out:
            out["type"] = [out["type"], "null"]
        strict = "properties" in out and not out.get("x-kubernetes-preserve-unknown-fields")
        if strict and not top and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [openapi_to_jsonschema(v, False) for v in node]
    return node


def main():
    install = sys.argv[1]
    failures = []
    run = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet", "-k", "1.33.0", install],
        capture_output=True,
        text=True,
    )
    print(run.stdout + run.stderr, end="")
    if run.returncode != 0:
        failures.append("kubernetes-validate refused the install output")

    docs = [d for d in yaml.safe_load_all(open(install)) if d]
    schemas = {}
    for d in docs:
        if d["kind"] == "CustomResourceDefinition" and d["spec"]["group"] == "policy.strait.dev":
            for v in d["spec"]["versions"]:
                schema = openapi_to_jsonschema(v["schema"]["openAPIV3Schema"])
                schemas[(d["spec"]["names"]["kind"], v["name"])] = schema
    if len(schemas) != 10:
        failures.append(f"expected 10 policy.strait.dev CRDs, found {sorted(schemas)}")

    checked = 0
    for path in sorted(glob.glob("examples/**/*.yaml", recursive=True)):
        for doc in yaml.safe_load_all(open(path)):
            if not doc or not str(doc.get("apiVersion", "")).startswith("policy.strait.dev/"):
                continue
            key = (doc["kind"], doc["apiVersion"].split("/")[1])
            try:
                jsonschema.validate(doc, schemas[key])
                checked += 1
            except (KeyError, jsonschema.ValidationError) as e:
                failures.append(f"{path}: {doc['kind']} {doc['metadata']['name']}: {e}")
    print(f"{checked} policy manifests of examples/ pass their CRD schema")
    if checked == 0:
        failures.append("no policy manifest found in examples/")

    # Kinds examples/ does not use: what docs/policies.md shows.
    good = [
        {"apiVersion": "policy.strait.dev/v1alpha1", "kind": "TelemetryPolicy",
         "metadata": {"name": "edge"},
         "spec": {"targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                  "name": "shop", "sectionName": "https"}],
                  "accessLog": {"enabled": True, "samplingPercentage": 10, "format": "text"},
                  "tracing": {"samplingPercentage": 1}}},
        {"apiVersion": "policy.strait.dev/v1alpha1", "kind": "SecurityPolicy",
         "metadata": {"name": "api-jwt"},
         "spec": {"targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute",
                                  "name": "api"}],
                  "jwt": {"optional": False, "providers": [{
                      "name": "issuer", "issuer": "https://issuer.example", "audiences": ["shop"],
                      "localJWKS": {"type": "ValueRef",
                                    "valueRef": {"group": "", "kind": "ConfigMap", "name": "keys"}},
                      "extractFrom": {"headers": [{"name": "authorization", "valuePrefix": "Bearer "}],
                                      "cookies": ["session"], "params": ["access_token"]},
                      "claimToHeaders": [{"claim": "sub", "header": "x-user"}],
                      "forward": False}]}}},
        {"apiVersion": "policy.strait.dev/v1alpha1", "kind": "SecurityPolicy",
         "metadata": {"name": "api-keys"},
         "spec": {"targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute",
                                  "name": "api"}],
                  "apiKeyAuth": {"credentialRefs": [{"group": "", "kind": "Secret", "name": "api-keys"}],
                                 "extractFrom": [{"headers": ["x-api-key"]}, {"params": ["api_key"]}],
                                 "forwardClientIDHeader": "x-client-id", "forward": False},
                  "basicAuth": {"users": {"group": "", "kind": "Secret", "name": "users"},
                                "forwardUsernameHeader": "x-user", "forward": False},
                  "authorization": {"defaultAction": "Deny", "rules": [
                      {"name": "office", "action": "Allow",
                       "principal": {"clientCIDRs": ["203.0.113.0/24"]}},
                      {"name": "admins", "action": "Allow",
                       "principal": {"jwt": {"provider": "issuer",
                                             "claims": [{"name": "org.groups", "values": ["admins"]}],
                                             "scopes": ["write"]}}}]}}},
        {"apiVersion": "policy.strait.dev/v1alpha1", "kind": "RateLimitPolicy",
         "metadata": {"name": "api-limits", "namespace": "shop"},
         "spec": {"targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute",
                                  "name": "api"}],
                  "disableRateLimitHeaders": False,
                  "local": {"rules": [
                      {"name": "per-user",
                       "clientSelectors": [{"headers": [{"name": "x-user", "type": "Distinct"}]}],
                       "limit": {"requests": 100, "unit": "Minute", "burst": 20}},
                      {"name": "ceiling", "limit": {"requests": 1000, "unit": "Second"},
                       "shadowMode": False, "shared": False}]},
                  "global": {"redis": {"url": "redis://redis.shop:6379", "timeout": "50ms",
                                       "failureMode": "Open"},
                             "rules": [{"clientSelectors": [{"sourceCIDR": {"type": "Distinct",
                                                                            "value": "0.0.0.0/0"}}],
                                        "limit": {"requests": 10, "unit": "Second"}}]}}},
        {"apiVersion": "policy.strait.dev/v1alpha1", "kind": "RateLimitPolicy",
         "metadata": {"name": "via-sentinel", "namespace": "shop"},
         "spec": {"targetRefs": [{"group": "apps", "kind": "Deployment", "name": "cart"}],
                  "global": {"redis": {"sentinel": {"masterName": "mymaster",
                                                    "urls": ["rediss://:pw@redis-sentinel.shop:26379"]},
                                       "caCertificateRefs": [{"kind": "ConfigMap", "name": "redis-ca"}]},
                             "rules": [{"limit": {"requests": 10, "unit": "Second"}}]}}},
        {"apiVersion": "policy.strait.dev/v1alpha1", "kind": "RateLimitPolicy",
         "metadata": {"name": "via-cluster", "namespace": "shop"},
         "spec": {"targetRefs": [{"group": "apps", "kind": "Deployment", "name": "cart"}],
                  "global": {"redis": {"cluster": ["redis://redis-0.redis.shop:6379",
                                                   "redis://redis-1.redis.shop:6379"]},
                             "rules": [{"limit": {"requests": 10, "unit": "Second"}}]}}},
        {"apiVersion": "policy.strait.dev/v1alpha1", "kind": "BodyTransform",
         "metadata": {"name": "to-legacy", "namespace": "shop"},
         "spec": {"maxBodyBytes": 65536,
                  "request": {"convert": "JSONToXML", "rootElement": "order", "edits": [
                      {"op": "Remove", "path": "/password"},
                      {"op": "Rename", "path": "/userName", "to": "/customer/name"},
                      {"op": "Set", "path": "/channel", "value": "{{ request.header.x-channel }}"},
                      {"op": "Set", "path": "/meta", "value": {"v": 2, "tags": ["a"]}}]},
                  "response": {"convert": "XMLToJSON", "edits": [
                      {"op": "Rename", "path": "/order/@id", "to": "/order/id"}]}}},
    ]
    for doc in good:
        try:
            jsonschema.validate(doc, schemas[(doc["kind"], "v1alpha1")])
            print(f"the {doc['kind']} CRD accepts the documented example")
        except (KeyError, jsonschema.ValidationError) as e:
            failures.append(f"the {doc['kind']} CRD refuses the documented example: {e}")

    bad = [
        ({"apiVersion": "policy.strait.dev/v1alpha1", "kind": "TelemetryPolicy",
          "metadata": {"name": "t"}, "spec": {"accessLog": {"sampling": 5}}}, "an unknown field"),
        ({"apiVersion": "policy.strait.dev/v1alpha1", "kind": "SecurityPolicy",
          "metadata": {"name": "s"}, "spec": {"jwt": {"providers": []}}}, "a missing required field"),
        ({"apiVersion": "policy.strait.dev/v1alpha1", "kind": "BackendTrafficPolicy",
          "metadata": {"name": "b"},
          "spec": {"targetRefs": [{"group": "", "kind": "Service", "name": "s"}],
                   "circuitBreaker": {"maxConnections": "many"}}}, "a string for an integer"),
        ({"apiVersion": "policy.strait.dev/v1alpha1", "kind": "AuthorizationPolicy",
          "metadata": {"name": "a"}, "spec": {"rulez": []}}, "an unknown field"),
        ({"apiVersion": "policy.strait.dev/v1alpha1", "kind": "BackendTrafficPolicy",
          "metadata": {"name": "b"}, "spec": {}}, "a missing required field"),
        ({"apiVersion": "policy.strait.dev/v1alpha1", "kind": "DirectResponse",
          "metadata": {"name": "d"},
          "spec": {"statusCode": "forbidden", "body": {"type": "Inline", "inline": "no"}}},
         "a string for an integer"),
        ({"apiVersion": "policy.strait.dev/v1alpha1", "kind": "RateLimitPolicy",
          "metadata": {"name": "r"},
          "spec": {"targetRefs": [], "local": {"rules": [{"limit": {"requests": "ten", "unit": "Second"}}]}}},
         "a string for an integer"),
        ({"apiVersion": "policy.strait.dev/v1alpha1", "kind": "BodyTransform",
          "metadata": {"name": "t"}, "spec": {"request": {"convert": "JSONToXML", "root": "x"}}},
         "an unknown field"),
        ({"apiVersion": "policy.strait.dev/v1alpha1", "kind": "BodyTransform",
          "metadata": {"name": "t"}, "spec": {"request": {"edits": [{"path": "/a"}]}}},
         "a missing required field"),
    ]
    for doc, what in bad:
        try:
            jsonschema.validate(doc, schemas[(doc["kind"], "v1alpha1")])
            failures.append(f"the {doc['kind']} CRD accepts {what}")
        except jsonschema.ValidationError:
            print(f"the {doc['kind']} CRD refuses {what}")

    for f in failures:
        print("FAIL:", f)
    sys.exit(1 if failures else 0)


main()
