use super::*;
use crate::model::Owner;

/// A record `id` of `owner`, launched by `parent`.
fn record(id: &str, owner: &str, parent: Option<&str>) -> Record {
    let mut r: Record = serde_json::from_value(serde_json::json!({
        "id": id, "unit": format!("refine-{owner}-{id}.service"),
        "owner": owner, "state": "running"
    }))
    .unwrap();
    r.requested_by.parent = parent.map(Into::into);
    r
}

/// A launch tree: a started b, b started c; d has no parent.
fn parent_of(id: &str) -> Option<RequestedBy> {
    let parent = match id {
        "b" => Some("a".into()),
        "c" => Some("b".into()),
        _ => None,
    };
    Some(RequestedBy {
        parent,
        ..Default::default()
    })
}

fn process(id: &str) -> Option<Launcher<'_>> {
    Some(Launcher::Process(id))
}

#[test]
fn a_record_descends_from_itself_and_every_launcher_up_its_chain() {
    let c = record("c", "agent", Some("b"));
    assert!(descends(&c, Launcher::Process("c"), parent_of));
    assert!(descends(&c, Launcher::Process("b"), parent_of));
    assert!(descends(&c, Launcher::Process("a"), parent_of));
    assert!(!descends(&c, Launcher::Process("d"), parent_of));
    assert!(!descends(
        &record("d", "agent", None),
        Launcher::Process("a"),
        parent_of
    ));
}

#[test]
fn a_corrupt_parent_chain_that_loops_ends_as_not_descending() {
    let looped = |id: &str| {
        Some(RequestedBy {
            parent: Some(if id == "x" { "y" } else { "x" }.to_string()),
            ..Default::default()
        })
    };
    assert!(!descends(
        &record("x", "agent", Some("y")),
        Launcher::Process("z"),
        looped
    ));
}

#[test]
fn descendants_reach_only_what_the_caller_launched_transitively() {
    let agent = Actor::Managed(Owner::Agent);
    let c = record("c", "agent", Some("b"));
    assert!(may_act_on(
        Reach::Descendants,
        agent,
        process("a"),
        &c,
        parent_of
    ));
    assert!(!may_act_on(
        Reach::Descendants,
        agent,
        process("d"),
        &c,
        parent_of
    ));
    // A person is no managed process: it descends from nothing.
    assert!(!may_act_on(
        Reach::Descendants,
        Actor::Person,
        None,
        &c,
        parent_of
    ));
}

#[test]
fn same_owner_reaches_its_owner_and_its_descendants_and_all_reaches_all() {
    let agent = Actor::Managed(Owner::Agent);
    let mine = record("d", "agent", None);
    let theirs = record("c", "quality", Some("b"));
    assert!(may_act_on(
        Reach::SameOwner,
        agent,
        process("x"),
        &mine,
        parent_of
    ));
    assert!(!may_act_on(
        Reach::SameOwner,
        agent,
        process("x"),
        &theirs,
        parent_of
    ));
    assert!(may_act_on(
        Reach::SameOwner,
        agent,
        process("a"),
        &theirs,
        parent_of
    ));
    assert!(may_act_on(
        Reach::All,
        Actor::Person,
        None,
        &theirs,
        parent_of
    ));
}

#[test]
fn a_lowered_person_acts_on_what_it_launched_while_lowered_and_their_children_only() {
    let agent = Actor::Managed(Owner::Agent);
    let me = Launcher::Lowered("agent@100:5");
    let lowered = |who: &str| RequestedBy {
        acting_owner: Some(Owner::Agent),
        lowered: Some(who.into()),
        ..Default::default()
    };
    let mut mine = record("m", "agent", None);
    mine.requested_by = lowered("agent@100:5");
    // A child that the lowered session's process started in turn.
    let child = record("k", "agent", Some("m"));
    let launcher_of = |id: &str| (id == "m").then(|| lowered("agent@100:5"));
    let mut other_session = record("o", "agent", None);
    other_session.requested_by = lowered("agent@200:9");
    let persons = record("p", "agent", None);
    for (target, allowed) in [
        (&mine, true),
        (&child, true),
        (&other_session, false),
        (&persons, false),
    ] {
        assert_eq!(
            may_act_on(Reach::Descendants, agent, Some(me), target, launcher_of),
            allowed,
            "{}",
            target.id
        );
    }
    // Never beyond the owner's reach: same-owner stops at its owner.
    let theirs = record("q", "quality", None);
    assert!(may_act_on(
        Reach::SameOwner,
        agent,
        Some(me),
        &persons,
        launcher_of
    ));
    assert!(!may_act_on(
        Reach::SameOwner,
        agent,
        Some(me),
        &theirs,
        launcher_of
    ));
    // A managed process of that id is not the lowered session.
    assert!(!may_act_on(
        Reach::Descendants,
        agent,
        process("agent@100:5"),
        &mine,
        launcher_of
    ));
}

#[test]
fn a_lowered_requester_marks_its_launches_and_a_managed_one_does_not() {
    let who = Caller::this_process().lowered_to(Owner::Agent);
    let requester = Requester {
        actor: Actor::Managed(Owner::Agent),
        caller: None,
        parent: None,
        policy: Policy::load(Path::new("/nonexistent/policy.toml")).unwrap(),
        audit_actor: "agent".into(),
        lowered: Some(lowered_identity(Owner::Agent, &who)),
        who,
    };
    let by = requester.requested_by();
    assert_eq!(by.acting_owner, Some(Owner::Agent));
    assert_eq!(by.parent, None);
    let lowered = by.lowered.unwrap();
    assert!(
        lowered.starts_with(&format!("agent@{}:", std::process::id())),
        "{lowered}"
    );
}

#[test]
fn a_group_is_covered_only_by_all_or_by_same_owner_for_its_own_owner() {
    let agent = Actor::Managed(Owner::Agent);
    let own = Selection {
        owner: Some(Owner::Agent),
        ..Default::default()
    };
    let narrower = Selection {
        workflow: Some("ci".into()),
        ..own.clone()
    };
    let everything = Selection {
        all: true,
        ..Default::default()
    };
    assert!(may_act_on_group(Reach::SameOwner, agent, &own));
    assert!(!may_act_on_group(Reach::SameOwner, agent, &narrower));
    assert!(!may_act_on_group(Reach::SameOwner, Actor::Person, &own));
    assert!(!may_act_on_group(Reach::Descendants, agent, &own));
    assert!(may_act_on_group(Reach::All, agent, &everything));
}
