use super::*;

#[test]
fn the_situation_names_what_works_and_the_way_forward() {
    let s = |pid1: &str, manager, sandbox| Situation::classify(pid1.into(), manager, None, sandbox);
    assert_eq!(s("systemd", true, false).kind, "session");
    let no_manager = s("systemd", false, false);
    assert_eq!(no_manager.kind, "no-user-manager");
    assert!(no_manager.summary.contains("loginctl enable-linger"));
    let sandbox = s("bash", true, true);
    assert_eq!((sandbox.kind, sandbox.pid1_is_systemd), ("sandbox", false));
    assert!(sandbox.summary.contains("ends with the sandbox"));
    assert_eq!(s("tini", true, false).kind, "user-manager-without-systemd");
    let none = s("sh", false, false);
    assert_eq!(none.kind, "no-systemd");
    assert!(
        none.summary.contains("PID 1 is sh") && none.summary.contains("sudo tests/sandbox/try")
    );
}

#[test]
fn reads_the_major_version() {
    assert_eq!(major_version("252.38-1~deb12u1"), Some(252));
    assert_eq!(major_version("256"), Some(256));
    assert_eq!(major_version("v255"), None);
}

#[test]
fn journald_conf_takes_the_journal_section_later_files_winning() {
    let mut c = JournaldConf::default();
    c.apply(
        "[Journal]\n#Storage=volatile\nStorage=auto\nRateLimitBurst=500\n[Other]\nStorage=none\n",
    );
    c.apply("[Journal]\nRateLimitBurst=\n");
    assert_eq!(c.get("Storage", "x"), "auto");
    // An empty value means the default, as in journald.
    assert_eq!(c.get("RateLimitBurst", "10000"), "10000");
    assert!(c.rate_limit_note(Some(252)).contains("#36191"));
    assert!(!c.rate_limit_note(Some(256)).contains("#36191"));
}

#[test]
fn journald_drop_ins_apply_in_name_order_etc_hiding_usr_lib() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    for d in [
        "etc/systemd/journald.conf.d",
        "usr/lib/systemd/journald.conf.d",
    ] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    std::fs::write(r.join("etc/systemd/journald.conf"), "").unwrap();
    std::fs::write(r.join("usr/lib/systemd/journald.conf.d/10-a.conf"), "").unwrap();
    std::fs::write(r.join("usr/lib/systemd/journald.conf.d/20-b.conf"), "").unwrap();
    std::fs::write(r.join("etc/systemd/journald.conf.d/20-b.conf"), "").unwrap();
    std::fs::write(r.join("etc/systemd/journald.conf.d/notes.txt"), "").unwrap();
    let files: Vec<String> = journald_conf_files(r)
        .iter()
        .map(|p| p.strip_prefix(r).unwrap().display().to_string())
        .collect();
    assert_eq!(
        files,
        [
            "etc/systemd/journald.conf",
            "usr/lib/systemd/journald.conf.d/10-a.conf",
            "etc/systemd/journald.conf.d/20-b.conf"
        ]
    );
}

#[test]
fn index_check_reads_without_creating() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    let c = index_check(&dir);
    assert_eq!(c.status, CheckStatus::Ok, "{c:?}");
    assert!(!dir.exists(), "doctor must not create the index");

    std::fs::create_dir_all(dir.join("records")).unwrap();
    std::fs::create_dir_all(dir.join("quarantine")).unwrap();
    std::fs::write(dir.join("format.json"), br#"{"format": 1}"#).unwrap();
    std::fs::write(dir.join("records/abcd2345.json"), b"{}").unwrap();
    assert_eq!(index_check(&dir).status, CheckStatus::Ok);
    assert!(index_check(&dir).detail.contains("1 record,"));

    std::fs::write(dir.join("quarantine/x.json.1"), b"garbage").unwrap();
    let c = index_check(&dir);
    assert_eq!(c.status, CheckStatus::Warn);
    assert!(c.fix.unwrap().contains("quarantine"));

    std::fs::write(dir.join("format.json"), br#"{"format": 99}"#).unwrap();
    let c = index_check(&dir);
    assert_eq!(c.status, CheckStatus::Fail);
    let report = Report::new(vec![c], vec![]);
    assert!(!report.ok);
    assert_eq!(report.exit_code(), 6);
}

#[test]
fn only_failed_required_checks_fail_the_report() {
    let warn = Check::new("lingering", false, ErrorKind::Systemd).bad("x", "y");
    assert_eq!(warn.status, CheckStatus::Warn);
    let report = Report::new(vec![warn], vec![]);
    assert!(report.ok);
    assert_eq!(report.exit_code(), 0);
    let bus = Check::new("user-bus", true, ErrorKind::Unavailable).bad("x", "y");
    let skipped = Check::new("daemon", false, ErrorKind::Systemd).skip("x");
    let report = Report::new(vec![skipped, bus], vec![]);
    assert_eq!(report.exit_code(), 5);
}
