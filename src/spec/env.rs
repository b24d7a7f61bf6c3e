//! The `REFINE_*` environment contract: what a unit is told about itself, and
//! how a record is rebuilt from it.

use std::collections::BTreeMap;

use super::*;

/// The REFINE_* variables a managed process sees, so it knows who it is
/// (and so the record can be rebuilt from systemd if the index is lost).
pub fn refine_environment(id: &str, launch: &Launch, context: &UnitContext) -> Vec<String> {
    let m = &launch.metadata;
    let mut env = vec![
        format!("REFINE_ID={id}"),
        format!("REFINE_OWNER={}", launch.owner),
        format!("REFINE_UNIT={}", crate::model::unit_name(launch.owner, id)),
        format!("REFINE_LABEL={}", launch.label),
        format!("REFINE_PROC_STATE_DIR={}", context.state_dir.display()),
        format!("REFINE_PROC_POLICY={}", context.policy.display()),
    ];
    if launch.persist {
        env.push("REFINE_PERSIST=1".into());
    }
    // For rebuilding the record: what is not in the unit otherwise. JSON
    // escapes every control character, so the values stay one line.
    let requested_by = serde_json::to_string(&context.requested_by).expect("serializable");
    env.push(format!("REFINE_REQUESTED_BY={requested_by}"));
    if !m.extra.is_empty() {
        let meta = serde_json::to_string(&m.extra).expect("serializable");
        env.push(format!("REFINE_META={meta}"));
    }
    if let Some(details) = &launch.details {
        env.push(format!("REFINE_DETAILS={details}"));
    }
    for (name, value) in [
        ("WORKFLOW", &m.workflow),
        ("GAP", &m.gap),
        ("SESSION", &m.session),
        ("MODE", &m.mode),
        ("RUNNER", &m.runner),
    ] {
        if let Some(v) = value {
            env.push(format!("REFINE_{name}={v}"));
        }
    }
    env
}

/// What [`refine_environment`] keeps for a rebuild and the unit has
/// nowhere else: details, `--meta` and who asked, put back into a record
/// rebuilt from the unit's environment. A unit started before these
/// variables existed gets the user manager's uid (a user manager runs only
/// its own user's units) and the policy its environment names.
pub fn restore_from_environment(env: &BTreeMap<String, String>, record: &mut crate::model::Record) {
    record.details = env.get("REFINE_DETAILS").cloned().or(record.details.take());
    if let Some(meta) = env.get("REFINE_META") {
        match serde_json::from_str(meta) {
            Ok(extra) => record.metadata.extra = extra,
            Err(e) => tracing::warn!(record = %record.id, "REFINE_META does not parse: {e}"),
        }
    }
    let stored = env
        .get("REFINE_REQUESTED_BY")
        .and_then(|v| serde_json::from_str(v).ok());
    record.requested_by = stored.unwrap_or_else(|| crate::provenance::RequestedBy {
        uid: crate::provenance::uid(),
        policy: env.get("REFINE_PROC_POLICY").cloned(),
        ..Default::default()
    });
}
