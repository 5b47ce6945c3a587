//! Which of several policies attached to a Service applies (Gateway API's
//! policy attachment rules, GEP-713): a policy in the Service's namespace
//! whose `targetRefs` name the Service; one naming the port (by
//! `sectionName`) over one for the whole Service, then the oldest, then
//! the first by name.

use strait_config::backendtls::PolicyTargetRef;
use strait_config::Object;

pub(crate) fn select<'a, S: 'a>(
    policies: impl Iterator<Item = &'a Object<S>>,
    targets: impl Fn(&S) -> &[PolicyTargetRef],
    ns: &str,
    name: &str,
    port_name: Option<&str>,
) -> Option<&'a Object<S>> {
    let mut found: Vec<(&Object<S>, bool)> = policies
        .filter(|p| p.metadata.namespace() == ns)
        .filter_map(|p| {
            let section = targets(&p.spec)
                .iter()
                .filter(|t| t.group.is_empty() && t.kind == "Service" && t.name == name)
                .filter(|t| {
                    t.section_name
                        .as_deref()
                        .is_none_or(|s| Some(s) == port_name)
                })
                .map(|t| t.section_name.is_some())
                .max()?;
            Some((p, section))
        })
        .collect();
    found.sort_by(|(a, a_section), (b, b_section)| {
        b_section
            .cmp(a_section)
            .then_with(|| age(&a.metadata).cmp(&age(&b.metadata)))
    });
    found.first().map(|(p, _)| *p)
}

/// How specifically `t` names a Gateway API object `kind`/`name`, and a
/// section of it (a listener, a rule): 2 for the section, 1 for the whole
/// object, `None` when it names something else.
pub(crate) fn rank(
    t: &PolicyTargetRef,
    kind: &str,
    name: &str,
    section: Option<&str>,
) -> Option<u8> {
    if t.group != "gateway.networking.k8s.io" || t.kind != kind || t.name != name {
        return None;
    }
    match t.section_name.as_deref() {
        None => Some(1),
        Some(s) if Some(s) == section => Some(2),
        Some(_) => None,
    }
}

/// Oldest first, then by name: the order conflicts are settled in.
pub(crate) fn age(m: &strait_config::meta::ObjectMeta) -> impl Ord + '_ {
    let t = m.creation_timestamp.as_deref();
    (t.is_none(), t, m.name.as_str())
}
