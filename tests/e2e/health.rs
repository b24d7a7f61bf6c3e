//! Health checks as `run` records them and `status` and `list` show them.
//! Probing is the daemon's job: here the state is written as the daemon
//! would (`Index::save_health`), to check what the commands make of it.

use serde_json::Value;

use super::common::*;
use refine_proc::health::{HealthState, HealthStatus, ProbeResult};
use refine_proc::model::Timestamp;

#[test]
fn the_check_is_kept_in_the_record_and_shown_with_its_state() {
    let env = Env::new();
    let out = env.ok(&[
        "run",
        "--json",
        "--health-http",
        "http://127.0.0.1:8080/health",
        "--health-interval",
        "30s",
        "--health-retries",
        "2",
        "--health-start-period",
        "1min",
        "--on-unhealthy",
        "restart",
        "--",
        "sleep",
        "300",
    ]);
    let record: Value = out.json();
    let id = record["id"].as_str().unwrap().to_string();
    let health = &record["health"];
    assert_eq!(health["check"]["kind"], "http");
    assert_eq!(health["check"]["url"], "http://127.0.0.1:8080/health");
    assert_eq!(health["interval_sec"], 30);
    assert_eq!(health["timeout_sec"], 5, "the default timeout");
    assert_eq!(health["retries"], 2);
    assert_eq!(health["start_period_sec"], 60);
    assert_eq!(health["on_unhealthy"], "restart");

    // Nothing has probed it yet: the check, with a null state.
    let out = env.ok(&["status", "--json", &id]);
    assert_eq!(
        out.stdout.matches("\"health\":").count(),
        1,
        "one health key: {}",
        out.stdout
    );
    let status: Value = out.json();
    assert_eq!(status["health"]["check"]["kind"], "http");
    assert_eq!(status["health"]["retries"], 2);
    assert!(status["health"]["state"].is_null(), "{}", status["health"]);
    let text = env.ok(&["status", &id]).stdout;
    assert!(text.contains("health: starting (not probed yet"), "{text}");
    assert!(
        text.contains("health check: http GET http://127.0.0.1:8080/health, every 30s"),
        "{text}"
    );
    let listed: Value = env.ok(&["list", "--json"]).json();
    assert_eq!(listed[0]["health_status"], "starting");
    let table = env.ok(&["list"]).stdout;
    assert!(table.lines().next().unwrap().contains("HEALTH"), "{table}");
    assert!(table.contains("starting"), "{table}");

    // As the daemon stores a probe's outcome.
    let index = refine_proc::index::Index::open(env.state_dir()).unwrap();
    let spec: refine_proc::health::HealthSpec = serde_json::from_value(health.clone()).unwrap();
    let mut state = HealthState::new(Timestamp::now());
    let probe = ProbeResult {
        ok: true,
        at: Timestamp::now(),
        duration_ms: 3,
        output: "HTTP/1.1 200 OK\nfine".into(),
        exit_code: None,
    };
    assert_eq!(
        state.apply(&spec, probe, Timestamp::now()),
        Some(HealthStatus::Healthy)
    );
    index.save_health(&id, &state).unwrap();
    let status: Value = env.ok(&["status", "--json", &id]).json();
    assert_eq!(status["health"]["state"]["status"], "healthy");
    assert_eq!(
        status["health"]["state"]["last"]["output"],
        "HTTP/1.1 200 OK\nfine"
    );
    let text = env.ok(&["status", &id]).stdout;
    assert!(text.contains("health: healthy since"), "{text}");
    assert!(text.contains("last ok"), "{text}");
    assert!(text.contains(": HTTP/1.1 200 OK"), "{text}");
    let listed: Value = env.ok(&["list", "--json"]).json();
    assert_eq!(listed[0]["health_status"], "healthy");

    // A new run starts its health anew.
    env.ok(&["restart", &id]);
    assert_eq!(index.health(&id).unwrap(), None);
    let status: Value = env.ok(&["status", "--json", &id]).json();
    assert!(status["health"]["state"].is_null());
    assert_eq!(
        status["health"]["on_unhealthy"], "restart",
        "kept by restart"
    );

    // Without a check: no health anywhere.
    let plain = env.run(&["--", "sleep", "300"]);
    let out = env.ok(&["status", "--json", &plain.id]);
    assert!(!out.stdout.contains("\"health"), "{}", out.stdout);
    let listed: Vec<Value> = env.ok(&["list", "--json"]).json();
    let row = listed
        .iter()
        .find(|r| r["id"] == plain.id.as_str())
        .unwrap();
    assert!(row.get("health_status").is_none(), "{row}");
}

#[test]
fn bad_health_flags_are_rejected_before_anything_starts() {
    let env = Env::new();
    let cases: &[(&[&str], &str)] = &[
        (&["--health-http", "https://user@localhost/"], "user names"),
        (&["--health-http", "localhost:8080/health"], "http://"),
        (&["--health-tcp", "localhost:0"], "port"),
        (&["--health-tcp", "localhost"], "port is missing"),
        (
            &[
                "--health-cmd",
                "true",
                "--health-interval",
                "5s",
                "--health-timeout",
                "10s",
            ],
            "longer than --health-interval",
        ),
        (
            &["--health-cmd", "true", "--health-tcp", "localhost:1"],
            "cannot be combined",
        ),
        (&["--health-cmd", ""], "empty"),
        (
            &["--health-cmd", "true", "--health-retries", "0"],
            "retries",
        ),
        (
            &["--health-cmd", "true", "--on-unhealthy", "reboot"],
            "--on-unhealthy",
        ),
        (&["--health-interval", "5s"], "needs a health check"),
    ];
    for (flags, message) in cases {
        let mut args = vec!["run"];
        args.extend_from_slice(flags);
        args.extend(["--", "true"]);
        let out = env.cmd(&args);
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(message), "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains("hint:"), "{args:?}: {}", out.stderr);
        assert!(out.stdout.is_empty(), "{args:?}: {}", out.stdout);
    }
    let records = std::fs::read_dir(env.state_dir().join("records"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(records, 0, "a rejected run left a record");
    // A short interval lowers the default timeout with it.
    let r: Value = env
        .ok(&[
            "run",
            "--json",
            "--health-tcp",
            "localhost:1",
            "--health-interval",
            "2s",
            "--",
            "true",
        ])
        .json();
    assert_eq!(
        (
            r["health"]["interval_sec"].as_u64(),
            r["health"]["timeout_sec"].as_u64()
        ),
        (Some(2), Some(2))
    );
}

#[test]
fn a_command_check_needs_a_policy_that_allows_the_shell() {
    let env = Env::new();
    std::fs::write(
        env.policy_path(),
        "[actors.agent]\ncommands = [\"/usr/bin/sleep\", \"/bin/sleep\"]\n",
    )
    .unwrap();
    let agent = env.run(&[
        "--owner",
        "agent",
        "--",
        "sh",
        "-c",
        &format!(
            r#"R='{}'; "$R" run --health-cmd 'rm -rf ~' -- sleep 600 2> err.txt; echo $? > rc.txt;
               "$R" run --json --health-tcp localhost:1 -- sleep 600 > allowed.json"#,
            binary().display()
        ),
    ]);
    wait_gone(&agent.unit);
    let read = |f: &str| std::fs::read_to_string(env.work_dir().join(f)).unwrap();
    assert_eq!(read("rc.txt").trim(), "7", "{}", read("err.txt"));
    let err = read("err.txt");
    assert!(
        err.contains("--health-cmd runs /bin/sh") && err.contains("rule commands"),
        "{err}"
    );
    let allowed: Value = serde_json::from_str(&read("allowed.json")).unwrap();
    assert_eq!(allowed["health"]["check"]["kind"], "tcp");
}

/// `openssl s_server -www` on 127.0.0.1 with `cert`/`key`; killed when dropped.
struct TlsServer {
    child: std::process::Child,
    port: u16,
}

impl TlsServer {
    fn start(cert: &std::path::Path, key: &std::path::Path) -> TlsServer {
        use std::io::BufRead;
        // A port the kernel just handed out; s_server takes it at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let mut child = std::process::Command::new("openssl")
            .args(["s_server", "-www", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(cert)
            .arg("-key")
            .arg(key)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start openssl s_server");
        // It prints ACCEPT once it listens: the signal to go on.
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if line.contains("ACCEPT") {
                    let _ = tx.send(());
                }
            }
        });
        let mut server = TlsServer { child, port };
        if rx.recv_timeout(std::time::Duration::from_secs(20)).is_err() {
            let _ = server.child.kill();
            panic!("openssl s_server did not listen on {port} within 20s");
        }
        server
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Makes a CA and a certificate it signs for localhost and 127.0.0.1 in
/// `dir`, named `NAME-ca.pem`, `NAME.pem` and `NAME.key`.
fn make_certificate(dir: &std::path::Path, name: &str) {
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let (ca, ca_key, key, csr, cert) = (
        format!("{name}-ca.pem"),
        format!("{name}-ca.key"),
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.pem"),
    );
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        &format!("/CN={name} test CA"),
        "-keyout",
        &ca_key,
        "-out",
        &ca,
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        &key,
        "-out",
        &csr,
    ]);
    let ext = dir.join(format!("{name}.ext"));
    std::fs::write(
        &ext,
        "basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-days",
        "1",
        "-out",
        &cert,
        "-extfile",
        ext.to_str().unwrap(),
    ]);
}

#[test]
fn https_checks_trust_ssl_cert_file_and_fail_on_a_certificate_it_does_not_vouch_for() {
    if std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_err()
    {
        skip("openssl is not installed (.ci/run installs it)");
        return;
    }
    let env = Env::new();
    let dir = env.work_dir();
    make_certificate(dir, "trusted");
    make_certificate(dir, "stranger");
    let run = |server: &TlsServer| {
        let url = format!("https://localhost:{}/", server.port);
        let mut cmd = env.command(&[
            "run",
            "--json",
            "--health-http",
            &url,
            "--health-timeout",
            "2s",
            "--ready",
            "health",
            "--ready-timeout",
            "5s",
            "--wait-ready",
            "--",
            "sleep",
            "600",
        ]);
        // Only the test CA is trusted: the system's roots are not read.
        cmd.env("SSL_CERT_FILE", dir.join("trusted-ca.pem"));
        cmd.env_remove("SSL_CERT_DIR");
        output(cmd)
    };

    // A certificate from the trusted CA: healthy, with the server's answer.
    let good = TlsServer::start(&dir.join("trusted.pem"), &dir.join("trusted.key"));
    let out = run(&good);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let r: Rec = out.json();
    let status: Value = env.ok(&["status", "--json", &r.id]).json();
    let state = &status["health"]["state"];
    assert_eq!(state["status"], "healthy", "{status}");
    assert!(
        state["last"]["output"].as_str().unwrap().contains("200"),
        "{state}"
    );
    env.ok(&["stop", &r.id]);

    // One the trusted CA did not sign: never healthy, and the output says why.
    let bad = TlsServer::start(&dir.join("stranger.pem"), &dir.join("stranger.key"));
    let out = run(&bad);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("did not pass within 5s"),
        "{}",
        out.stderr
    );
    // The last probe's output, in the error: why the certificate failed.
    assert!(
        out.stderr.contains("TLS handshake") && out.stderr.contains("certificate"),
        "{}",
        out.stderr
    );
    // It keeps running (as the hint says): stop it.
    let index = refine_proc::index::Index::open(env.state_dir()).unwrap();
    for id in index.ids().unwrap() {
        env.ok(&["stop", &id]);
    }
}
