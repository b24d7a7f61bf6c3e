//! Record ids and the unit names made of them: `refine-<owner>-<id>.service`
//! (or `.scope`), and the unit-name arguments people pass.

use super::{Owner, Record, UnitKind};

/// Characters of record ids: lowercase letters and digits without the
/// look-alikes 0/o, 1/l/i, so ids can be read aloud and typed.
const ID_ALPHABET: &[u8] = b"23456789abcdefghjkmnpqrstuvwxyz";
pub const ID_LEN: usize = 8;

/// A fresh random record id (40 bits of entropy); never derived from user text.
pub fn new_id() -> String {
    use std::io::Read;
    let mut bytes = [0u8; ID_LEN];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("reading /dev/urandom");
    bytes
        .iter()
        .map(|b| ID_ALPHABET[*b as usize % ID_ALPHABET.len()] as char)
        .collect()
}

/// Whether `s` could be a record id (or a prefix of one).
pub fn is_id_like(s: &str) -> bool {
    !s.is_empty() && s.len() <= ID_LEN && s.bytes().all(|b| ID_ALPHABET.contains(&b))
}

/// `refine-<owner>-<id>.service`
pub fn unit_name(owner: Owner, id: &str) -> String {
    format!("refine-{owner}-{id}.service")
}

/// `refine-<owner>-<id>.scope`: the unit of an adopted process.
pub fn scope_name(owner: Owner, id: &str) -> String {
    format!("refine-{owner}-{id}.scope")
}

/// The owner and id of a unit (service or scope) that follows
/// refine-proc's naming, else None.
pub fn parse_unit_name(unit: &str) -> Option<(Owner, String)> {
    parse_unit(unit).map(|(owner, id, _)| (owner, id))
}

/// Like [`parse_unit_name`], with the kind of unit the suffix names.
pub fn parse_unit(unit: &str) -> Option<(Owner, String, UnitKind)> {
    let (stem, kind) = match unit.strip_suffix(".service") {
        Some(stem) => (stem, UnitKind::Service),
        None => (unit.strip_suffix(".scope")?, UnitKind::Scope),
    };
    let (owner, id) = stem.strip_prefix("refine-")?.rsplit_once('-')?;
    let owner = owner.parse().ok()?;
    (id.len() == ID_LEN && is_id_like(id)).then(|| (owner, id.to_string(), kind))
}

/// The owner, id and kind a unit-name argument names: `refine-<owner>-<id>`
/// with `.service` or `.scope`, or without a suffix (either kind). Refused
/// when it does not follow refine-proc's naming.
pub fn unit_arg(arg: &str) -> crate::Result<(Owner, String, Option<UnitKind>)> {
    let parsed = match parse_unit(arg) {
        Some((owner, id, kind)) => Some((owner, id, Some(kind))),
        None if !arg.contains('.') => {
            parse_unit(&format!("{arg}.service")).map(|(owner, id, _)| (owner, id, None))
        }
        None => None,
    };
    parsed.ok_or_else(|| {
        crate::Error::refused(format!(
            "{} is not a unit refine-proc created",
            crate::text::escape(arg)
        ))
        .hint("refine-proc only acts on its own units (refine-<owner>-<id>.service or .scope, or an id); use systemctl --user for others")
    })
}

/// Refuses a unit-name argument that names another unit than the record
/// of its id has (another owner, or a scope for a service): the id alone
/// must not make `refine-daemon-ID.service` mean `refine-agent-ID.service`.
pub fn check_unit_arg(
    arg: &str,
    owner: Owner,
    kind: Option<UnitKind>,
    record: &Record,
) -> crate::Result<()> {
    if record.owner == owner && kind.is_none_or(|k| k == record.kind) {
        return Ok(());
    }
    Err(crate::Error::not_found(format!(
        "no unit {}: process {} is {}",
        crate::text::escape(arg),
        record.id,
        record.unit
    ))
    .hint(format!(
        "use its id {} or its unit name {}",
        record.id, record.unit
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_arguments_take_names_without_suffix_and_nothing_else() {
        let id = new_id();
        let (owner, got, kind) = unit_arg(&format!("refine-agent-{id}")).unwrap();
        assert_eq!(
            (owner, got.as_str(), kind),
            (Owner::Agent, id.as_str(), None)
        );
        let (_, _, kind) = unit_arg(&format!("refine-agent-{id}.scope")).unwrap();
        assert_eq!(kind, Some(UnitKind::Scope));
        for bad in [
            format!("refine-agent-{id}.socket"),
            format!("refine-nobody-{id}"),
            "sshd.service".to_string(),
        ] {
            assert_eq!(
                unit_arg(&bad).unwrap_err().kind,
                crate::ErrorKind::Refused,
                "{bad}"
            );
        }
    }

    #[test]
    fn unit_names_round_trip_for_every_owner() {
        for owner in Owner::ALL {
            let id = new_id();
            assert!(is_id_like(&id));
            assert_eq!(parse_unit_name(&unit_name(owner, &id)), Some((owner, id)));
        }
        assert_eq!(parse_unit_name("refine-agent-short.service"), None);
        assert_eq!(parse_unit_name("refine-nobody-abcd2345.service"), None);
        assert_eq!(parse_unit_name("sshd.service"), None);
        let id = new_id();
        assert_eq!(
            parse_unit(&scope_name(Owner::UserHelper, &id)),
            Some((Owner::UserHelper, id.clone(), UnitKind::Scope))
        );
        assert_eq!(
            parse_unit(&unit_name(Owner::Agent, &id)),
            Some((Owner::Agent, id, UnitKind::Service))
        );
        assert_eq!(parse_unit_name("refine-agent-abcd2345.slice"), None);
        assert_eq!(parse_unit_name("refine-harness.scope"), None);
        assert_eq!(Owner::Agent.slice(), "refine-agent.slice");
        assert_eq!(Owner::UserHelper.slice(), "refine-user\\x2dhelper.slice");
    }
}
