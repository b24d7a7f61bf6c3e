//! Unit tests of health checks: specs, the state machine, and real probes
//! against local servers and commands.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

use crate::model::{Record, State, Timestamp};

use super::http::{parse_http_url, HttpTarget};
use super::*;
use std::time::SystemTime;
use tokio::io::AsyncWriteExt;

fn spec(check: HealthCheck) -> HealthSpec {
    HealthSpec::new(check)
}

fn http(url: &str) -> HealthSpec {
    spec(HealthCheck::Http { url: url.into() })
}

fn tcp(address: &str) -> HealthSpec {
    spec(HealthCheck::Tcp {
        address: address.into(),
    })
}

fn cmd(command: &str) -> HealthSpec {
    spec(HealthCheck::Cmd {
        command: command.into(),
    })
}

#[test]
fn urls_addresses_and_commands_are_checked_with_a_fix() {
    for ok in [
        "http://localhost",
        "http://127.0.0.1:8080/health",
        "http://[::1]:9000/x?y=1",
        "HTTP://example.com/a/b",
    ] {
        http(ok).validate().unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    http("https://example.com/").validate().unwrap();
    for (bad, why) in [
        ("ftp://x/", "http://"),
        ("http://", "host is missing"),
        ("http://:80/", "host is missing"),
        ("http://x:0/", "port"),
        ("http://x:99999/", "port"),
        ("http://x:abc/", "port"),
        ("http://u:p@x/", "passwords"),
        ("http://x/a b", "spaces"),
        ("http://x/\r\nEvil: 1", "control"),
        ("http://::1/", "brackets"),
        ("http://[zz]/", "IPv6"),
    ] {
        let e = http(bad).validate().unwrap_err();
        assert!(e.message.contains(why), "{bad}: {e}");
        assert_eq!(e.kind, crate::ErrorKind::Invalid);
        assert!(e.hint.is_some(), "{bad}");
    }
    assert_eq!(
        parse_http_url("http://h:81").unwrap(),
        HttpTarget {
            host: "h".into(),
            port: 81,
            tls: false,
            path: "/".into()
        }
    );
    let secure = parse_http_url("HTTPS://h/x").unwrap();
    assert_eq!(
        (secure.port, secure.tls, secure.path.as_str()),
        (443, true, "/x")
    );
    assert_eq!(secure.host_header(), "h");
    assert_eq!(
        parse_http_url("https://h:80/").unwrap().host_header(),
        "h:80"
    );
    assert_eq!(parse_http_url("http://h?q=1#frag").unwrap().path, "/?q=1");
    assert_eq!(parse_http_url("http://h/").unwrap().host_header(), "h");
    assert_eq!(
        parse_http_url("http://[::1]:8080/").unwrap().host_header(),
        "[::1]:8080"
    );

    for ok in ["localhost:5432", "127.0.0.1:1", "[::1]:65535"] {
        tcp(ok).validate().unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    for (bad, why) in [
        ("localhost", "port is missing"),
        ("localhost:0", "port"),
        ("localhost:70000", "port"),
        (":80", "host is missing"),
        ("[::1]", "port is missing"),
        ("a b:80", "not a host"),
    ] {
        let e = tcp(bad).validate().unwrap_err();
        assert!(e.message.contains(why), "{bad}: {e}");
        assert!(e.hint.is_some(), "{bad}");
    }

    cmd("true").validate().unwrap();
    assert!(cmd("  ").validate().unwrap_err().message.contains("empty"));
    let huge = "x".repeat(MAX_HEALTH_COMMAND + 1);
    assert!(cmd(&huge).validate().unwrap_err().message.contains("bytes"));
    assert!(cmd("a\0b").validate().is_err());
}

#[test]
fn health_errors_name_their_inputs_as_each_surface_does() {
    use crate::error::Field;
    let mut s = cmd("true");
    (s.interval_sec, s.timeout_sec) = (5, 10);
    let e = s.validate().unwrap_err();
    // The CLI's words stay as they were.
    assert_eq!(
        e.message,
        "--health-timeout 10s is longer than --health-interval 5s"
    );
    let api = e.worded(Field::json_field);
    assert_eq!(
        api.message,
        "health_timeout 10s is longer than health_interval 5s"
    );
    assert_eq!(
        api.hint.as_deref(),
        Some("a probe must end before the next one starts: lower health_timeout or raise health_interval")
    );
    let e = tcp("localhost").validate().unwrap_err();
    assert!(e.message.starts_with("invalid --health-tcp address"), "{e}");
    let api = e.worded(Field::json_field);
    assert!(
        api.message.starts_with("invalid health_tcp address"),
        "{api}"
    );
}

#[test]
fn timings_are_checked() {
    let mut s = cmd("true");
    s.validate().unwrap();
    s.timeout_sec = 11;
    let e = s.validate().unwrap_err();
    assert!(e.message.contains("longer than --health-interval"), "{e}");
    s.timeout_sec = 10;
    s.validate().unwrap();
    s.interval_sec = 0;
    assert!(s.validate().is_err());
    let mut s = cmd("true");
    s.retries = 0;
    assert!(s.validate().unwrap_err().message.contains("retries"));
    let mut s = cmd("true");
    s.start_period_sec = MAX_PERIOD_SEC + 1;
    assert!(s.validate().unwrap_err().message.contains("start-period"));
    let mut s = cmd("true");
    s.timeout_sec = 0;
    assert!(s.validate().is_err());
}

#[test]
fn the_spec_round_trips_and_defaults_fill_in() {
    let s = HealthSpec {
        on_unhealthy: OnUnhealthy::Restart,
        ..http("http://localhost:8080/health")
    };
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["check"]["kind"], "http");
    assert_eq!(json["check"]["url"], "http://localhost:8080/health");
    assert_eq!(json["on_unhealthy"], "restart");
    assert_eq!(serde_json::from_value::<HealthSpec>(json).unwrap(), s);
    let minimal: HealthSpec =
        serde_json::from_str(r#"{"check": {"kind": "tcp", "address": "h:1"}}"#).unwrap();
    assert_eq!(minimal, tcp("h:1"));
    assert_eq!("stop".parse::<OnUnhealthy>().unwrap(), OnUnhealthy::Stop);
    let e = "reboot".parse::<OnUnhealthy>().unwrap_err();
    assert!(e.hint.unwrap().contains("restart, stop, none"));
}

fn t(secs: u64) -> Timestamp {
    Timestamp(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs))
}

fn result(ok: bool, at: u64) -> ProbeResult {
    ProbeResult {
        ok,
        at: t(at),
        duration_ms: 1,
        output: String::new(),
        exit_code: None,
    }
}

#[test]
fn failures_within_the_start_period_do_not_count_until_healthy() {
    let mut s = cmd("true");
    s.start_period_sec = 30;
    s.retries = 2;
    let mut h = HealthState::new(t(0));
    for at in [5, 15, 25] {
        assert_eq!(h.apply(&s, result(false, at), t(0)), None);
        assert_eq!((h.status, h.failures), (HealthStatus::Starting, 0));
    }
    // Past the start period they count.
    assert_eq!(h.apply(&s, result(false, 35), t(0)), None);
    assert_eq!(h.failures, 1);
    assert_eq!(
        h.apply(&s, result(false, 45), t(0)),
        Some(HealthStatus::Unhealthy)
    );
    assert_eq!(h.since, t(45));
    assert!(h.last.as_ref().is_some_and(|l| l.at == t(45)));

    // Once healthy, failures count even within the start period.
    let mut h = HealthState::new(t(0));
    assert_eq!(
        h.apply(&s, result(true, 5), t(0)),
        Some(HealthStatus::Healthy)
    );
    assert_eq!(h.apply(&s, result(false, 10), t(0)), None);
    assert_eq!(
        h.apply(&s, result(false, 15), t(0)),
        Some(HealthStatus::Unhealthy)
    );
}

#[test]
fn retries_failures_in_a_row_make_it_unhealthy_and_one_success_heals() {
    let s = cmd("true"); // retries 3, no start period
    let mut h = HealthState::new(t(0));
    assert_eq!(
        h.apply(&s, result(true, 1), t(0)),
        Some(HealthStatus::Healthy)
    );
    assert_eq!(h.apply(&s, result(true, 2), t(0)), None);
    // A success between failures resets the count.
    assert_eq!(h.apply(&s, result(false, 3), t(0)), None);
    assert_eq!(h.apply(&s, result(false, 4), t(0)), None);
    assert_eq!(h.apply(&s, result(true, 5), t(0)), None);
    assert_eq!(h.failures, 0);
    assert_eq!(h.apply(&s, result(false, 6), t(0)), None);
    assert_eq!(h.apply(&s, result(false, 7), t(0)), None);
    assert_eq!(
        h.apply(&s, result(false, 8), t(0)),
        Some(HealthStatus::Unhealthy)
    );
    assert_eq!(h.apply(&s, result(false, 9), t(0)), None, "no repeat");
    assert_eq!(h.failures, 4);
    assert_eq!(
        h.apply(&s, result(true, 10), t(0)),
        Some(HealthStatus::Healthy)
    );
    assert_eq!((h.failures, h.since), (0, t(10)));

    // Never healthy: starting turns unhealthy after the retries.
    let mut h = HealthState::new(t(0));
    assert_eq!(h.apply(&s, result(false, 1), t(0)), None);
    assert_eq!(h.apply(&s, result(false, 2), t(0)), None);
    assert_eq!(
        h.apply(&s, result(false, 3), t(0)),
        Some(HealthStatus::Unhealthy)
    );
}

#[test]
fn the_state_round_trips_as_json() {
    let mut h = HealthState::new(t(0));
    h.apply(&cmd("true"), result(true, 1), t(0));
    let json = serde_json::to_value(&h).unwrap();
    assert_eq!(json["status"], "healthy");
    assert_eq!(json["last"]["ok"], true);
    assert_eq!(serde_json::from_value::<HealthState>(json).unwrap(), h);
}

#[test]
fn an_event_names_the_transition() {
    let r: Record = serde_json::from_value(serde_json::json!({
        "id": "abcd2345", "unit": "refine-agent-abcd2345.service",
        "owner": "agent", "state": "running",
        "health": {"check": {"kind": "cmd", "command": "true"}, "on_unhealthy": "restart"}
    }))
    .unwrap();
    let mut last = result(false, 1);
    last.output = "x".repeat(5000);
    let e = health_event(&r, HealthStatus::Healthy, HealthStatus::Unhealthy, &last);
    assert_eq!(e.event, "unhealthy");
    assert_eq!(e.id.as_deref(), Some("abcd2345"));
    assert_eq!(e.details["from"], "healthy");
    assert_eq!(e.details["on_unhealthy"], "restart");
    assert_eq!(e.details["output"].as_str().unwrap().len(), EVENT_OUTPUT);
    let e = health_event(&r, HealthStatus::Unhealthy, HealthStatus::Starting, &last);
    assert_eq!(e.event, "health-starting");
}

#[test]
fn output_is_cut_at_characters() {
    assert_eq!(tail_text("aé".as_bytes(), 1), "");
    assert_eq!(tail_text("éa".as_bytes(), 2), "a");
    assert_eq!(tail_text(b"abc", 10), "abc");
    assert_eq!(tail_text(b"a\xffb", 10), "a\u{fffd}b");
    assert_eq!(head_text("éa", 1), "");
}

// Probes against real local endpoints.

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A server that answers every connection with `response`, then closes.
async fn serve(response: &'static [u8]) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.write_all(response).await;
                let _ = s.shutdown().await;
            });
        }
    });
    port
}

/// A port nothing listens on (bound, then closed).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn http_probes_read_the_status_and_the_start_of_the_body() {
    rt().block_on(async {
        let env = BTreeMap::new();
        let ok = serve(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nall ok\n").await;
        let r = probe(&http(&format!("http://127.0.0.1:{ok}/health")), None, &env).await;
        assert!(r.ok, "{r:?}");
        assert_eq!(r.output, "HTTP/1.1 200 OK\nall ok");
        assert_eq!(r.exit_code, None);

        let redirect = serve(b"HTTP/1.1 302 Found\r\nLocation: /x\r\n\r\n").await;
        let r = probe(&http(&format!("http://127.0.0.1:{redirect}/")), None, &env).await;
        assert!(r.ok, "{r:?}");

        let err = serve(
            b"HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nboom!\r\n0\r\n\r\n",
        )
        .await;
        let r = probe(&http(&format!("http://127.0.0.1:{err}/")), None, &env).await;
        assert!(!r.ok);
        assert_eq!(r.output, "HTTP/1.1 500 Internal Server Error\nboom!");

        let garbage = serve(b"SSH-2.0-OpenSSH_9\r\n\r\n").await;
        let r = probe(&http(&format!("http://127.0.0.1:{garbage}/")), None, &env).await;
        assert!(!r.ok && r.output.contains("not an HTTP response"), "{r:?}");

        let closed = closed_port();
        let r = probe(&http(&format!("http://127.0.0.1:{closed}/")), None, &env).await;
        assert!(!r.ok && r.output.contains("cannot connect"), "{r:?}");
    });
}

#[test]
fn an_http_probe_that_gets_no_answer_times_out() {
    rt().block_on(async {
        // Accepts (the kernel does, from the backlog) but never answers.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = silent.local_addr().unwrap().port();
        let mut s = http(&format!("http://127.0.0.1:{port}/"));
        s.timeout_sec = 1;
        let started = Instant::now();
        let r = probe(&s, None, &BTreeMap::new()).await;
        let took = started.elapsed();
        assert!(!r.ok && r.output.contains("timed out"), "{r:?}");
        assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(3));
        drop(silent);
    });
}

#[test]
fn tcp_probes_connect_or_say_why_not() {
    rt().block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let r = probe(&tcp(&format!("127.0.0.1:{port}")), None, &BTreeMap::new()).await;
        assert!(r.ok, "{r:?}");
        assert!(r.output.contains("connected to 127.0.0.1"));
        let closed = closed_port();
        let r = probe(&tcp(&format!("127.0.0.1:{closed}")), None, &BTreeMap::new()).await;
        assert!(!r.ok && r.output.contains("refused"), "{r:?}");
    });
}

#[test]
fn command_probes_report_the_exit_and_the_output() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let env = BTreeMap::from([("PROBE_X".to_string(), "42".to_string())]);
        let r = probe(
            &cmd("echo out $PROBE_X; echo err >&2; pwd"),
            Some(dir.path()),
            &env,
        )
        .await;
        assert!(r.ok, "{r:?}");
        assert_eq!(r.exit_code, Some(0));
        let canonical = std::fs::canonicalize(dir.path()).unwrap();
        assert_eq!(r.output, format!("out 42\nerr\n{}\n", canonical.display()));
        let r = probe(&cmd("echo nope; exit 3"), None, &env).await;
        assert!(!r.ok);
        assert_eq!((r.exit_code, r.output.as_str()), (Some(3), "nope\n"));
        let r = probe(&cmd("kill -9 $$"), None, &env).await;
        assert!(!r.ok && r.output.contains("signal KILL"), "{r:?}");
        let r = probe(&cmd("true"), Some(Path::new("/no/such/dir")), &env).await;
        assert!(!r.ok && r.output.contains("cannot run"), "{r:?}");
    });
}

#[test]
fn command_output_keeps_its_last_4_kib() {
    rt().block_on(async {
        // 1 MiB of output, then a marker: the writer is never blocked,
        // and the end is what is kept.
        let r = probe(
            &cmd("head -c 1048576 /dev/zero | tr '\\0' x; echo; echo THE-END"),
            None,
            &BTreeMap::new(),
        )
        .await;
        assert!(r.ok, "{}", &r.output[r.output.len().saturating_sub(200)..]);
        assert_eq!(r.output.len(), MAX_OUTPUT);
        assert!(r.output.ends_with("x\nTHE-END\n"));
    });
}

fn alive(pid: i32) -> bool {
    // SAFETY: kill(2) with signal 0 only checks.
    unsafe { libc::kill(pid, 0) == 0 }
}

#[test]
fn a_command_past_its_timeout_is_killed_with_its_children() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pids");
        let mut s = cmd(&format!(
            "sleep 300 & echo $! > {0}; echo $$ >> {0}; echo started; wait",
            pidfile.display()
        ));
        s.timeout_sec = 1;
        let started = Instant::now();
        let r = probe(&s, None, &BTreeMap::new()).await;
        let took = started.elapsed();
        assert!(!r.ok && r.exit_code.is_none());
        assert!(r.output.starts_with("started\n"), "{r:?}");
        assert!(r.output.contains("timed out after 1s"), "{r:?}");
        assert!(
            took >= Duration::from_millis(950) && took < Duration::from_millis(2500),
            "{took:?}"
        );
        let pids = std::fs::read_to_string(&pidfile).unwrap();
        for pid in pids.lines() {
            let pid: i32 = pid.trim().parse().unwrap();
            // Killed and reaped (the sleep's parent, the shell, is gone,
            // so init reaps it; allow a moment).
            let gone = (0..50).any(|_| {
                let zombie_or_gone = !alive(pid)
                    || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                        .map(|s| s.contains(") Z "))
                        .unwrap_or(true);
                if !zombie_or_gone {
                    std::thread::sleep(Duration::from_millis(20));
                }
                zombie_or_gone
            });
            assert!(gone, "pid {pid} of the probe still runs");
        }
    });
}

#[test]
fn a_background_job_does_not_hold_a_finished_probe() {
    rt().block_on(async {
        let started = Instant::now();
        let mut s = cmd("sleep 300 & echo done");
        s.timeout_sec = 5;
        let r = probe(&s, None, &BTreeMap::new()).await;
        assert!(r.ok, "{r:?}");
        assert_eq!(r.output, "done\n");
        assert!(started.elapsed() < Duration::from_secs(2));
    });
}

#[test]
fn only_running_processes_are_probed() {
    assert!(is_probed(State::Running));
    for s in [State::Paused, State::Starting, State::Queued, State::Exited] {
        assert!(!is_probed(s), "{s}");
    }
}
