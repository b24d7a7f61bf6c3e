use super::*;

#[test]
fn since_and_until_take_what_journalctl_takes_and_refuse_a_bare_span() {
    let ok = |s: &str| parse_time(s, "--since").unwrap();
    assert_eq!(ok("-1h"), "-3600000000us");
    assert_eq!(ok("10s ago"), "-10000000us");
    assert_eq!(ok("1h 30m ago"), "-5400000000us");
    assert_eq!(ok("+5min"), "+300000000us");
    assert_eq!(ok("today"), "today");
    assert_eq!(ok("@1700000000"), "@1700000000");
    assert_eq!(ok("2026-11-20"), "2026-11-20");
    assert_eq!(ok("2026-11-20 10:00"), "2026-11-20 10:00");
    assert_eq!(ok("2026-11-20T10:00:00Z"), "2026-11-20 10:00:00 UTC");
    assert_eq!(
        ok("Tue 2026-12-01 10:00:00.5 UTC"),
        "Tue 2026-12-01 10:00:00.5 UTC"
    );
    assert_eq!(ok("10:00"), "10:00");
    let err = parse_time("10s", "--since").unwrap_err();
    assert_eq!(err.kind, crate::ErrorKind::Invalid);
    assert!(err.hint.unwrap().contains("--since -10s"));
    for bad in [
        "",
        "soon",
        "-",
        "-1x",
        "2026-13-01",
        "25:00",
        "@x",
        "1h; rm -rf /",
    ] {
        let e = parse_time(bad, "--until").unwrap_err();
        assert!(e.message.starts_with("--until"), "{bad}: {}", e.message);
        assert!(e.hint.is_some());
    }
}

#[test]
fn time_points_are_the_moments_the_times_name() {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};
    let at = |s: &str| time_point(s, "--since").unwrap();
    assert_eq!(
        at("@1700000000"),
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    );
    assert_eq!(
        at("2023-11-14 22:13:20 UTC"),
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    );
    assert_eq!(
        at("2023-11-14T22:13:20Z"),
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    );
    let ago = SystemTime::now().duration_since(at("-1h")).unwrap();
    assert!((3599..=3601).contains(&ago.as_secs()), "{ago:?}");
    assert!(at("yesterday") < at("today") && at("today") < at("tomorrow"));
    assert!(at("today") <= SystemTime::now());
    assert!(time_point("10s", "--since").is_err());
}

#[test]
fn export_entries_decode_text_binary_and_repeated_fields() {
    let mut data = Vec::new();
    data.extend_from_slice(b"__CURSOR=s=1\n__REALTIME_TIMESTAMP=1700000000000000\n");
    data.extend_from_slice(b"SYSLOG_IDENTIFIER=refine-agent-abcd2345\n_PID=42\n");
    data.extend_from_slice(b"MESSAGE\n");
    data.extend_from_slice(&8u64.to_le_bytes());
    data.extend_from_slice(b"bad\xffbyte\n\n");
    data.extend_from_slice(b"MESSAGE=second\nMESSAGE=repeated\nPRIORITY=3\n\n");
    data.extend_from_slice(b"MESSAGE=last, no blank line\n");
    let mut r = std::io::Cursor::new(data);
    let one = read_export_entry(&mut r).unwrap().unwrap();
    assert_eq!(one.message, "bad\u{fffd}byte");
    assert_eq!(one.id.as_deref(), Some("abcd2345"));
    assert_eq!(one.unit.as_deref(), Some("refine-agent-abcd2345.service"));
    assert_eq!((one.pid, one.cursor.as_deref()), (Some(42), Some("s=1")));
    assert!(one.time.is_some());
    let two = read_export_entry(&mut r).unwrap().unwrap();
    assert_eq!((two.message.as_str(), two.priority), ("second", Some(3)));
    let three = read_export_entry(&mut r).unwrap().unwrap();
    assert_eq!(three.message, "last, no blank line");
    assert!(read_export_entry(&mut r).unwrap().is_none());
}

#[test]
fn queries_match_the_identifiers_of_the_caller_only() {
    let q = LogQuery {
        identifiers: vec![
            "refine-agent-abcd2345".into(),
            "refine-agent-bcde3456".into(),
        ],
        units: Vec::new(),
        uid: Some(1000),
        lines: Some(20),
        since: Some("-1h; rm -rf /".into()),
        until: None,
        follow: true,
        ..Default::default()
    };
    let args = journalctl_args(&q, "cat");
    assert!(args.contains(&"--output=cat".to_string()));
    assert!(args.contains(&"--lines=20".to_string()));
    // Passed as one argument, never through a shell.
    assert!(args.contains(&"--since=-1h; rm -rf /".to_string()));
    assert!(args.contains(&"--follow".to_string()));
    assert!(args.contains(&"_UID=1000".to_string()));
    assert!(args.ends_with(&[
        "SYSLOG_IDENTIFIER=refine-agent-abcd2345".to_string(),
        "SYSLOG_IDENTIFIER=refine-agent-bcde3456".to_string()
    ]));
}

#[test]
fn scopes_are_matched_by_unit_in_a_group_ored_with_the_identifiers() {
    let q = LogQuery {
        identifiers: vec!["refine-agent-abcd2345".into()],
        units: vec!["refine-agent-bcde3456.scope".into()],
        uid: Some(1000),
        ..Default::default()
    };
    let args = journalctl_args(&q, "cat");
    assert!(args.ends_with(&[
        "_UID=1000".to_string(),
        "SYSLOG_IDENTIFIER=refine-agent-abcd2345".to_string(),
        "+".to_string(),
        "_UID=1000".to_string(),
        "_SYSTEMD_USER_UNIT=refine-agent-bcde3456.scope".to_string(),
    ]));
    let only_scope = LogQuery {
        units: vec!["refine-agent-bcde3456.scope".into()],
        uid: Some(1000),
        ..Default::default()
    };
    let args = journalctl_args(&only_scope, "cat");
    assert!(!args.contains(&"+".to_string()));
    assert!(args.ends_with(&[
        "_UID=1000".to_string(),
        "_SYSTEMD_USER_UNIT=refine-agent-bcde3456.scope".to_string(),
    ]));
    let e = parse_entry(
        r#"{"SYSLOG_IDENTIFIER":"mytool","_SYSTEMD_USER_UNIT":"refine-agent-bcde3456.scope","MESSAGE":"m"}"#,
    )
    .unwrap();
    assert_eq!(e.id.as_deref(), Some("bcde3456"));
    assert_eq!(e.unit.as_deref(), Some("refine-agent-bcde3456.scope"));
}

#[test]
fn entries_decode_strings_bytes_and_repeated_fields() {
    let e = parse_entry(
        r#"{"__REALTIME_TIMESTAMP":"1700000000123000","_PID":"42","PRIORITY":"6",
            "SYSLOG_IDENTIFIER":"refine-agent-abcd2345","MESSAGE":"hello","__CURSOR":"s=1"}"#,
    )
    .unwrap();
    assert_eq!(e.message, "hello");
    assert_eq!(e.id.as_deref(), Some("abcd2345"));
    assert_eq!(e.unit.as_deref(), Some("refine-agent-abcd2345.service"));
    assert_eq!((e.pid, e.priority), (Some(42), Some(6)));
    assert_eq!(e.time.unwrap().to_string(), "2023-11-14T22:13:20.123Z");
    let e = parse_entry(r#"{"MESSAGE":[104,105,255]}"#).unwrap();
    assert_eq!(e.message, "hi\u{fffd}");
    let e = parse_entry(r#"{"MESSAGE":["first","second"]}"#).unwrap();
    assert_eq!(e.message, "first");
    assert!(parse_entry("not json").is_none());
}

#[test]
fn the_history_holds_the_managers_and_the_hooks_exits() {
    let units = vec!["refine-agent-abcd2345.service".to_string()];
    let lines = [
        r#"{"__REALTIME_TIMESTAMP":"1700000000000000","SYSLOG_IDENTIFIER":"refine-proc","REFINE_UNIT":"refine-agent-abcd2345.service","REFINE_EVENT":"start","REFINE_RECORD":"{\"id\":\"abcd2345\"}"}"#,
        r#"{"__REALTIME_TIMESTAMP":"1700000001000000","SYSLOG_IDENTIFIER":"systemd","USER_UNIT":"refine-agent-abcd2345.service","MESSAGE_ID":"7d4958e842da4a758f6c1cdc7b36dcc5"}"#,
        r#"{"__REALTIME_TIMESTAMP":"1700000002000000","SYSLOG_IDENTIFIER":"refine-agent-abcd2345","MESSAGE":"hi"}"#,
        r#"{"__REALTIME_TIMESTAMP":"1700000003000000","SYSLOG_IDENTIFIER":"systemd","USER_UNIT":"refine-agent-abcd2345.service","MESSAGE_ID":"98e322203f7a4ed290d09fe03c09fe15","COMMAND":"ExecStart","EXIT_CODE":"killed","EXIT_STATUS":"9","USER_INVOCATION_ID":"i1"}"#,
        r#"{"__REALTIME_TIMESTAMP":"1700000003000001","SYSLOG_IDENTIFIER":"systemd","USER_UNIT":"refine-agent-abcd2345.service","MESSAGE_ID":"d9b373ed55a64feb8242e02dbe79a49c","UNIT_RESULT":"timeout","USER_INVOCATION_ID":"i1"}"#,
        r#"{"__REALTIME_TIMESTAMP":"1700000004000000","SYSLOG_IDENTIFIER":"refine-proc","REFINE_UNIT":"refine-agent-abcd2345.service","REFINE_EVENT":"exit","REFINE_RESULT":"success","REFINE_EXIT_CODE":"exited","REFINE_EXIT_STATUS":"0","REFINE_INVOCATION":"i2"}"#,
        r#"{"SYSLOG_IDENTIFIER":"systemd","USER_UNIT":"other.service","MESSAGE_ID":"98e322203f7a4ed290d09fe03c09fe15"}"#,
    ];
    let h = parse_history(lines.into_iter(), &units);
    assert_eq!(h.len(), 1);
    let h = &h[&units[0]];
    assert!(h.seen_by_manager);
    assert_eq!(h.start.as_ref().unwrap()["id"], "abcd2345");
    assert!(h.last_output_at.is_some());
    assert_eq!(h.exits.len(), 2);
    assert_eq!(
        (h.exits[0].result.as_str(), h.exits[0].signal.as_deref()),
        ("timeout", Some("KILL"))
    );
    let last = h.exit_after(None, None).unwrap();
    assert_eq!((last.result.as_str(), last.code), ("success", Some(0)));
    // The record already holds i2: the newest exit it misses is i1's.
    assert_eq!(
        h.exit_after(None, Some("i2"))
            .unwrap()
            .invocation
            .as_deref(),
        Some("i1")
    );
    assert!(!h.forgotten());
    // A forget counts by its time, whatever order journalctl prints in.
    let forget = r#"{"__REALTIME_TIMESTAMP":"1700000009000000","SYSLOG_IDENTIFIER":"refine-proc","REFINE_UNIT":"refine-agent-abcd2345.service","REFINE_EVENT":"forget"}"#;
    let h = parse_history([forget, lines[0]].into_iter(), &units);
    assert!(h[&units[0]].forgotten());
    let args = history_args(1000, &units, None);
    assert!(args.ends_with(&[
        "+".to_string(),
        "_UID=1000".to_string(),
        "SYSLOG_IDENTIFIER=refine-agent-abcd2345".to_string()
    ]));
}
