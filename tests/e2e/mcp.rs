//! `refine-proc mcp` driven by the official MCP SDK's client (rmcp), over
//! the real binary's stdin/stdout, against the real user manager.

use std::future::Future;
use std::process::Stdio;
use std::time::Duration;

use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{json, Value};

use super::common::Env;

/// How long one MCP session of a test may take in all.
const SESSION_TIMEOUT: Duration = Duration::from_secs(90);

/// The server (`refine-proc mcp ARGS`) with this test's index and policy,
/// and the SDK's client talking to it.
struct Session {
    client: RunningService<RoleClient, ()>,
    /// The server as a child of the test (none: it runs in a unit).
    child: Option<tokio::process::Child>,
}

impl Session {
    async fn start(env: &Env, args: &[&str]) -> Session {
        let mut all = vec!["mcp"];
        all.extend_from_slice(args);
        let mut cmd = tokio::process::Command::from(env.command(&all));
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn refine-proc mcp");
        let stdout = child.stdout.take().unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut s = Session::over(stdout, stdin).await;
        s.child = Some(child);
        s
    }

    /// The SDK's streamable HTTP client on `url` (the daemon's `/mcp`),
    /// through the Unix socket `socket`, with `token` as a bearer token.
    async fn http(socket: &std::path::Path, url: &str, token: Option<&str>) -> Session {
        use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
        use rmcp::transport::StreamableHttpClientTransport;
        let mut config = StreamableHttpClientTransportConfig::with_uri(url.to_string());
        if let Some(t) = token {
            config = config.auth_header(t.to_string());
        }
        let transport = StreamableHttpClientTransport::from_unix_socket_with_config(
            socket.to_str().unwrap(),
            config,
        );
        let client = ().serve(transport).await.expect("the MCP handshake over HTTP");
        Session {
            client,
            child: None,
        }
    }

    async fn over<R, W>(from_server: R, to_server: W) -> Session
    where
        R: tokio::io::AsyncRead + Send + Unpin + 'static,
        W: tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let client =
            ().serve((from_server, to_server))
                .await
                .expect("the MCP handshake with refine-proc mcp");
        Session {
            client,
            child: None,
        }
    }

    /// A tool call that the protocol carried (a tool error is a result).
    async fn call(&self, name: &'static str, args: Value) -> CallToolResult {
        let Value::Object(args) = args else {
            panic!("arguments are an object")
        };
        self.client
            .call_tool(CallToolRequestParams::new(name).with_arguments(args))
            .await
            .unwrap_or_else(|e| panic!("{name}: the call failed at the protocol level: {e}"))
    }

    /// A call that must succeed: its structured content.
    async fn ok(&self, name: &'static str, args: Value) -> Value {
        let r = self.call(name, args.clone()).await;
        assert_ne!(r.is_error, Some(true), "{name} {args} failed: {r:?}");
        match r.structured_content {
            Some(v) => v,
            None => panic!("{name}: no structured content: {:?}", r.content),
        }
    }

    async fn close(self) {
        let _ = self.client.cancel().await;
        let Some(mut child) = self.child else { return };
        // Closing stdin ends the server; it must exit on its own.
        let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .expect("refine-proc mcp exits when its client goes away")
            .unwrap();
        assert!(status.success(), "refine-proc mcp exited with {status}");
    }
}

/// Runs an async test body on a runtime, failing it after SESSION_TIMEOUT.
fn block_on<F: Future<Output = ()>>(body: F) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            tokio::time::timeout(SESSION_TIMEOUT, body)
                .await
                .expect("the MCP test finished in time")
        })
}

#[test]
fn mcp_lists_tools_with_schemas_and_annotations() {
    let env = Env::new();
    block_on(async {
        let s = Session::start(&env, &[]).await;
        let tools = s.client.list_all_tools().await.expect("tools/list");
        let tools: Vec<Value> = tools
            .iter()
            .map(|t| serde_json::to_value(t).unwrap())
            .collect();
        let find = |name: &str| -> &Value {
            tools
                .iter()
                .find(|t| t["name"] == name)
                .unwrap_or_else(|| panic!("no tool {name} in {tools:?}"))
        };
        // (name, read_only, destructive, idempotent) as src/mcp.rs sets them;
        // None: the hint is not given (the protocol's default applies).
        let expected: [(&str, bool, Option<bool>, bool); 14] = [
            ("list", true, None, true),
            ("status", true, None, true),
            ("run", false, Some(false), false),
            ("stop", false, Some(true), true),
            ("kill", false, Some(true), false),
            ("restart", false, Some(true), false),
            ("pause", false, Some(false), true),
            ("resume", false, Some(false), true),
            ("logs", true, None, true),
            ("wait", true, None, true),
            ("events", true, None, true),
            ("policy_check", true, None, true),
            ("send", false, Some(false), false),
            ("screen", true, None, true),
        ];
        assert_eq!(tools.len(), expected.len(), "{tools:?}");
        for (name, read_only, destructive, idempotent) in expected {
            let t = find(name);
            assert_eq!(t["inputSchema"]["type"], "object", "{name}: {t}");
            assert!(
                t["description"].as_str().is_some_and(|d| d.len() > 20),
                "{name}: {t}"
            );
            let a = &t["annotations"];
            assert_eq!(
                a["readOnlyHint"].as_bool().unwrap_or(false),
                read_only,
                "{name}: {a}"
            );
            assert_eq!(a["destructiveHint"].as_bool(), destructive, "{name}: {a}");
            assert_eq!(
                a["idempotentHint"].as_bool().unwrap_or(false),
                idempotent,
                "{name}: {a}"
            );
        }
        // The argument names are the contract.
        let run = &find("run")["inputSchema"]["properties"];
        assert_eq!(run["command"]["type"], "array", "{run}");
        for arg in ["owner", "label", "workflow", "cwd", "env"] {
            assert!(run.get(arg).is_some(), "run has no {arg}: {run}");
        }
        let wait = &find("wait")["inputSchema"];
        for arg in ["id", "until", "pattern", "timeout"] {
            assert!(wait["properties"].get(arg).is_some(), "{wait}");
        }
        for tool in [
            "status", "kill", "restart", "logs", "wait", "send", "screen",
        ] {
            let schema = &find(tool)["inputSchema"];
            assert!(schema["properties"].get("id").is_some(), "{tool}: {schema}");
        }
        s.close().await;
    });
}

#[test]
fn mcp_run_wait_logs_paged_then_stop() {
    let env = Env::new();
    block_on(async {
        let s = Session::start(&env, &[]).await;
        // Five lines, then it ends: wait for its exit, read them in pages.
        let rec = s
            .ok(
                "run",
                json!({"command": ["sh", "-c", "for i in 1 2 3 4 5; do echo line-$i; done"],
                       "label": "mcp five lines"}),
            )
            .await;
        let id = rec["id"].as_str().expect("a record id").to_string();
        assert_eq!(rec["label"], "mcp five lines", "{rec}");
        assert_eq!(
            rec["owner"], "user-helper",
            "the CLI's default owner: {rec}"
        );
        let w = s
            .ok("wait", json!({"id": id, "until": "exit", "timeout": "30s"}))
            .await;
        assert_eq!(w["met"], true, "{w}");
        assert_eq!(w["record"]["exit_code"], 0, "{w}");
        assert_eq!(w["record"]["state"], "exited", "{w}");
        // journald may index the last lines a moment after the exit: wait
        // for the fifth line as a pattern before paging.
        let w = s
            .ok(
                "wait",
                json!({"id": id, "until": "log", "pattern": "^line-5$", "timeout": "20s"}),
            )
            .await;
        assert_eq!(w["met"], true, "{w}");
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut args = json!({"id": id, "limit": 2});
            if let Some(c) = &cursor {
                args["cursor"] = json!(c);
            }
            let page = s.ok("logs", args).await;
            pages += 1;
            let lines = page["lines"].as_array().expect("lines").clone();
            assert!(lines.len() <= 2, "limit 2 is kept: {page}");
            seen.extend(
                lines
                    .iter()
                    .map(|l| l["message"].as_str().unwrap().to_string()),
            );
            cursor = page["next_cursor"].as_str().map(str::to_string);
            if page["more"] != true {
                break;
            }
            assert!(pages < 10, "paging does not end: {page}");
        }
        let seen: Vec<&str> = seen
            .iter()
            .map(String::as_str)
            .filter(|l| l.starts_with("line-"))
            .collect();
        assert_eq!(seen, ["line-1", "line-2", "line-3", "line-4", "line-5"]);
        assert!(pages >= 3, "five lines at two a page take three pages");

        // A long runner: stop it, and it is stopped.
        let rec = s
            .ok(
                "run",
                json!({"command": ["sleep", "600"], "owner": "agent"}),
            )
            .await;
        let id = rec["id"].as_str().unwrap().to_string();
        assert_eq!(rec["state"], "running", "{rec}");
        let stopped = s.ok("stop", json!({"id": id})).await;
        let outcome = &stopped["outcomes"][0];
        assert_eq!(outcome["id"], id, "{stopped}");
        let status = s.ok("status", json!({"id": id})).await;
        assert_eq!(status["state"], "stopped", "{status}");
        s.close().await;
    });
}

#[test]
fn mcp_wait_until_log_pattern_and_timeout() {
    let env = Env::new();
    block_on(async {
        let s = Session::start(&env, &[]).await;
        let rec = s
            .ok(
                "run",
                json!({"command": ["sh", "-c", "sleep 1; echo 'server ready on :8080'; exec sleep 600"]}),
            )
            .await;
        let id = rec["id"].as_str().unwrap().to_string();
        let w = s
            .ok(
                "wait",
                json!({"id": id, "until": "log", "pattern": "ready on :[0-9]+", "timeout": "20s"}),
            )
            .await;
        assert_eq!(w["met"], true, "{w}");
        assert_eq!(w["line"]["message"], "server ready on :8080", "{w}");
        // A pattern that never comes: not met, the reason given, in time.
        let w = s
            .ok(
                "wait",
                json!({"id": id, "until": "log", "pattern": "never", "timeout": "1s"}),
            )
            .await;
        assert_eq!(w["met"], false, "{w}");
        // Bad input: a clear tool error, not a protocol failure.
        let bad = s
            .call("wait", json!({"id": id, "until": "soon", "timeout": "1s"}))
            .await;
        assert_eq!(bad.is_error, Some(true), "{bad:?}");
        let err = bad.structured_content.unwrap();
        assert_eq!(err["kind"], "invalid", "{err}");
        s.ok("stop", json!({"id": id})).await;
        s.close().await;
    });
}

#[test]
fn mcp_events_with_a_cursor_lose_and_repeat_nothing() {
    let env = Env::new();
    block_on(async {
        let s = Session::start(&env, &[]).await;
        let mut ids = Vec::new();
        for _ in 0..3 {
            let rec = s.ok("run", json!({"command": ["true"]})).await;
            ids.push(rec["id"].as_str().unwrap().to_string());
        }
        for id in &ids {
            s.ok("wait", json!({"id": id, "until": "exit", "timeout": "30s"}))
                .await;
        }
        // The whole history at once, then again one event a page.
        let all = s.ok("events", json!({"limit": 1000})).await;
        let all: Vec<String> = all["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event_id"].as_str().unwrap().to_string())
            .collect();
        assert!(all.len() >= 6, "three starts and three exits: {all:?}");
        let mut paged = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..100 {
            let mut args = json!({"limit": 1});
            if let Some(c) = &cursor {
                args["cursor"] = json!(c);
            }
            let page = s.ok("events", args).await;
            assert_eq!(page["restarted"], false, "{page}");
            for e in page["events"].as_array().unwrap() {
                paged.push(e["event_id"].as_str().unwrap().to_string());
            }
            cursor = page["next_cursor"].as_str().map(str::to_string);
            if page["more"] != true {
                break;
            }
        }
        assert_eq!(paged, all, "paging loses or repeats nothing");
        // Past the end: nothing, until something happens.
        let page = s
            .ok("events", json!({"cursor": cursor.clone().unwrap()}))
            .await;
        assert_eq!(page["events"], json!([]), "{page}");
        let rec = s.ok("run", json!({"command": ["true"]})).await;
        let page = s.ok("events", json!({"cursor": cursor.unwrap()})).await;
        let first = &page["events"][0];
        assert_eq!(
            first["id"], rec["id"],
            "the new run's event comes next: {page}"
        );
        s.close().await;
    });
}

/// The policy of the refusal tests: agent may run sleep only.
fn agent_may_sleep_only(env: &Env) {
    std::fs::write(
        env.policy_path(),
        "[actors.agent]\ncommands = [\"/usr/bin/sleep\", \"/bin/sleep\"]\n",
    )
    .unwrap();
}

/// A tool error that names the rule and the policy file.
fn assert_refused(r: &CallToolResult, env: &Env) {
    assert_eq!(r.is_error, Some(true), "refused: {r:?}");
    let err = r.structured_content.clone().expect("a structured error");
    assert_eq!(err["kind"], "denied", "{err}");
    assert_eq!(
        err["exit_code"], 7,
        "the CLI's exit code for a refusal: {err}"
    );
    let text = format!("{} {}", err["error"], err["hint"]);
    assert!(text.contains("commands"), "names the rule: {err}");
    let file = env.policy_path().display().to_string();
    assert!(text.contains(&file), "names the file {file}: {err}");
}

#[test]
fn mcp_actor_agent_is_refused_by_policy_as_a_tool_error() {
    let env = Env::new();
    agent_may_sleep_only(&env);
    block_on(async {
        let s = Session::start(&env, &["--actor", "agent"]).await;
        let refused = s.call("run", json!({"command": ["echo", "hi"]})).await;
        assert_refused(&refused, &env);
        // What the policy allows still runs, as the agent's.
        let rec = s.ok("run", json!({"command": ["sleep", "600"]})).await;
        assert_eq!(rec["owner"], "agent", "{rec}");
        // policy_check says the same before trying.
        let v = s
            .ok(
                "policy_check",
                json!({"launch": {"command": ["echo", "hi"]}}),
            )
            .await;
        assert_eq!(v["launch"]["allowed"], false, "{v}");
        let v = s
            .ok(
                "policy_check",
                json!({"launch": {"command": ["sleep", "1"]}}),
            )
            .await;
        assert_eq!(v["launch"]["allowed"], true, "{v}");
        assert_eq!(v["launch"]["owner"], "agent", "{v}");
        s.close().await;
    });
    env.ok(&["stop", "--all"]);
}

#[test]
fn mcp_actor_agent_stops_what_it_launched_but_not_what_it_did_not() {
    let env = Env::new();
    agent_may_sleep_only(&env);
    // The agent's process, launched by a person: not the lowered session's.
    let persons = env.run(&["--owner", "agent", "--", "sleep", "600"]);
    block_on(async {
        let s = Session::start(&env, &["--actor", "agent"]).await;
        let rec = s.ok("run", json!({"command": ["sleep", "600"]})).await;
        let id = rec["id"].as_str().unwrap().to_string();
        assert_eq!(rec["requested_by"]["acting_owner"], "agent", "{rec}");
        assert!(
            rec["requested_by"]["lowered"]
                .as_str()
                .is_some_and(|l| l.starts_with("agent@")),
            "its launcher is the lowered session: {rec}"
        );
        let stopped = s.ok("stop", json!({"id": id})).await;
        assert_eq!(stopped["outcomes"][0]["id"], id, "{stopped}");
        let status = s.ok("status", json!({"id": id})).await;
        assert_eq!(status["state"], "stopped", "{status}");
        // As a managed agent would be: act_on keeps it off the rest.
        let refused = s.call("stop", json!({"id": persons.id})).await;
        assert_eq!(refused.is_error, Some(true), "{refused:?}");
        let err = refused.structured_content.clone().unwrap();
        assert_eq!(err["kind"], "denied", "{err}");
        assert!(err.to_string().contains("act_on"), "names the rule: {err}");
        // Another lowered session of the same owner is another launcher.
        let mine = s.ok("run", json!({"command": ["sleep", "600"]})).await;
        s.close().await;
        let other = Session::start(&env, &["--actor", "agent"]).await;
        let refused = other.call("stop", json!({"id": mine["id"]})).await;
        assert_eq!(refused.is_error, Some(true), "{refused:?}");
        other.close().await;
    });
    assert_eq!(env.status(&persons.id).state, "running");
    env.ok(&["stop", "--all"]);
}

#[test]
fn mcp_actor_rejects_an_unknown_owner_before_serving() {
    let env = Env::new();
    let out = env.cmd(&["mcp", "--actor", "root"]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("--actor"), "{}", out.stderr);
    assert!(
        out.stderr.contains("agent"),
        "the hint lists owners: {}",
        out.stderr
    );
    assert!(out.stdout.is_empty(), "nothing on the protocol's stdout");
}

#[test]
fn mcp_server_inside_an_agent_unit_is_that_agent_bound_by_its_policy() {
    let env = Env::new();
    agent_may_sleep_only(&env);
    let dir = env.work_dir();
    for fifo in ["in.fifo", "out.fifo"] {
        let path = std::ffi::CString::new(dir.join(fifo).to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0, "mkfifo");
    }
    // The server is the agent's managed process; its --actor cannot change
    // that (a managed caller keeps its own policy).
    let server = env.run(&[
        "--owner",
        "agent",
        "--label",
        "mcp server",
        "--",
        "sh",
        "-c",
        &format!(
            "exec '{}' mcp --actor quality < in.fifo > out.fifo",
            super::common::binary().display()
        ),
    ]);
    // The shell opens in.fifo, then out.fifo: open them in that order, on
    // a thread, so that a server that never opens them fails the test.
    let (tx, rx) = std::sync::mpsc::channel();
    let (i, o) = (dir.join("in.fifo"), dir.join("out.fifo"));
    std::thread::spawn(move || {
        let to = std::fs::OpenOptions::new().write(true).open(i).unwrap();
        let _ = tx.send((to, std::fs::File::open(o).unwrap()));
    });
    let (to_server, from_server) = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the server in the unit opens its fifos");
    block_on(async {
        let to_server = tokio::net::unix::pipe::Sender::from_file(to_server).unwrap();
        let from_server = tokio::net::unix::pipe::Receiver::from_file(from_server).unwrap();
        let s = Session::over(from_server, to_server).await;
        let refused = s.call("run", json!({"command": ["echo", "hi"]})).await;
        assert_refused(&refused, &env);
        let child = s.ok("run", json!({"command": ["sleep", "600"]})).await;
        assert_eq!(child["owner"], "agent", "{child}");
        let id = child["id"].as_str().unwrap().to_string();
        let status = s.ok("status", json!({"id": id})).await;
        assert_eq!(
            status["requested_by"]["parent"], server.id,
            "the server's unit is the launcher: {status}"
        );
        // Its own child: act_on allows the stop.
        let stopped = s.ok("stop", json!({"id": id})).await;
        assert_eq!(stopped["outcomes"][0]["id"], id, "{stopped}");
        s.close().await;
    });
    // Closing its stdin ends the server, and so its unit.
    super::common::wait_gone(&server.unit);
    let rec = env.status(&server.id);
    assert_eq!(rec.exit_code, Some(0), "{rec:?}");
}

#[test]
fn mcp_help_has_examples_and_the_actor_rule() {
    let env = Env::new();
    let out = env.ok(&["mcp", "--help"]);
    assert!(out.stdout.contains("Examples:"), "{}", out.stdout);
    assert!(out.stdout.contains("--actor agent"), "{}", out.stdout);
    assert!(out.stdout.contains("never raise"), "{}", out.stdout);
    // The stdio server, the HTTP endpoint and the confined path.
    for part in [
        "stdin/stdout",
        "/mcp",
        "--listen",
        "web --token",
        "Confined",
        "API socket",
    ] {
        assert!(out.stdout.contains(part), "{part}: {}", out.stdout);
    }
}

#[test]
fn mcp_resources_are_a_process_record_and_its_logs() {
    let env = Env::new();
    block_on(async {
        let s = Session::start(&env, &[]).await;
        let templates = s.client.list_all_resource_templates().await.unwrap();
        let templates = serde_json::to_value(&templates).unwrap();
        let t = templates.to_string();
        assert!(t.contains("refine-proc://process/{id}\""), "{t}");
        assert!(t.contains("refine-proc://process/{id}/logs"), "{t}");
        let rec = s
            .ok(
                "run",
                json!({"command": ["sh", "-c", "echo resource-line; exec sleep 600"]}),
            )
            .await;
        let id = rec["id"].as_str().unwrap().to_string();
        s.ok(
            "wait",
            json!({"id": id, "until": "log", "pattern": "resource-line", "timeout": "20s"}),
        )
        .await;
        let listed = serde_json::to_value(s.client.list_all_resources().await.unwrap()).unwrap();
        let record_uri = format!("refine-proc://process/{id}");
        let logs_uri = format!("{record_uri}/logs");
        for uri in [&record_uri, &logs_uri] {
            assert!(
                listed
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r["uri"] == uri.as_str()),
                "{uri} listed: {listed}"
            );
        }
        let read = |uri: String| async {
            let r = s
                .client
                .read_resource(rmcp::model::ReadResourceRequestParams::new(uri))
                .await
                .expect("resources/read");
            let r = serde_json::to_value(r).unwrap();
            let text = r["contents"][0]["text"].as_str().expect("text").to_string();
            serde_json::from_str::<Value>(&text).expect("JSON text")
        };
        let record = read(record_uri).await;
        assert_eq!(record["id"], id.as_str(), "{record}");
        assert_eq!(record["state"], "running", "{record}");
        let logs = read(logs_uri).await;
        assert!(
            logs["lines"].to_string().contains("resource-line"),
            "{logs}"
        );
        assert!(logs.get("next_cursor").is_some(), "{logs}");
        // An unknown process: a protocol error, not a crash.
        let missing = s
            .client
            .read_resource(rmcp::model::ReadResourceRequestParams::new(
                "refine-proc://process/zzzzzzzz",
            ))
            .await;
        assert!(missing.is_err(), "{missing:?}");
        s.ok("stop", json!({"id": id})).await;
        s.close().await;
    });
}

/// A Unix socket at `path` whose connections go on to the TCP `port`: the
/// SDK's HTTP client without reqwest then reaches the daemon's TCP
/// listener, which sees a TCP peer (and must get a token).
fn to_tcp(path: &std::path::Path, port: u16) -> tokio::task::JoinHandle<()> {
    let listener = tokio::net::UnixListener::bind(path).unwrap();
    tokio::spawn(async move {
        while let Ok((mut unix, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut tcp) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                    let _ = tokio::io::copy_bidirectional(&mut unix, &mut tcp).await;
                }
            });
        }
    })
}

fn token(env: &Env, d: &super::api::ApiDaemon, scope: &str) -> String {
    let mut c = env.command(&["web", "--token", scope, "--socket"]);
    c.arg(&d.socket);
    let out = super::common::output(c);
    assert_eq!(out.code, 0, "{}", out.stderr);
    out.stdout.trim().to_string()
}

#[test]
fn mcp_over_http_with_a_token_lists_runs_waits_reads_logs_and_stops() {
    let env = Env::new();
    let d = super::api::ApiDaemon::start(&env);
    let control = token(&env, &d, "control");
    let read = token(&env, &d, "read");
    let url = format!("{}mcp", d.url);
    let port: u16 = d
        .url
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // No token: 401, before any MCP.
    let out = super::common::output({
        let mut c = std::process::Command::new("curl");
        c.args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
        ])
        .args(["-X", "POST", "-H", "Content-Type: application/json"])
        .args(["-H", "Accept: application/json, text/event-stream"])
        .args([
            "--data-binary",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
        ])
        .arg(&url);
        c
    });
    assert_eq!(out.stdout, "401", "{out:?}");
    let fwd = env.work_dir().join("tcp.sock");
    block_on(async {
        let _forward = to_tcp(&fwd, port);
        let s = Session::http(&fwd, &url, Some(&control)).await;
        let tools = s.client.list_all_tools().await.expect("tools/list");
        assert_eq!(tools.len(), 14, "{tools:?}");
        let rec = s
            .ok(
                "run",
                json!({"command": ["sh", "-c", "echo over-http; sleep 600"]}),
            )
            .await;
        let id = rec["id"].as_str().unwrap().to_string();
        let w = s
            .ok(
                "wait",
                json!({"id": id, "until": "log", "pattern": "^over-http$", "timeout": "20s"}),
            )
            .await;
        assert_eq!(w["met"], true, "{w}");
        let page = s.ok("logs", json!({"id": id})).await;
        assert!(page.to_string().contains("over-http"), "{page}");
        let stopped = s.ok("stop", json!({"id": id})).await;
        assert_eq!(stopped["outcomes"][0]["id"], id, "{stopped}");
        let w = s
            .ok("wait", json!({"id": id, "until": "exit", "timeout": "20s"}))
            .await;
        assert_eq!(w["record"]["state"], "stopped", "{w}");
        let _ = s.client.cancel().await;
        // A read token: the read-only tools, and run is not one of them.
        let s = Session::http(&fwd, &url, Some(&read)).await;
        let tools = s.client.list_all_tools().await.expect("tools/list");
        let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
        assert!(
            names.contains(&"list") && !names.contains(&"run"),
            "{names:?}"
        );
        let args = json!({"command": ["sleep", "600"]});
        let Value::Object(args) = args else {
            unreachable!()
        };
        // Unlisted, yet a call is a tool error that names the scope and
        // the fix, not the protocol's "tool not found".
        let r = s
            .client
            .call_tool(CallToolRequestParams::new("run").with_arguments(args))
            .await
            .expect("a tool error, not a protocol error");
        assert_eq!(r.is_error, Some(true), "a read token ran a process: {r:?}");
        let e = r.structured_content.expect("a structured error");
        let message = e["error"].as_str().unwrap_or_default();
        assert!(message.contains("scope is read"), "{e}");
        assert!(
            e["hint"]
                .as_str()
                .unwrap_or_default()
                .contains("control token"),
            "{e}"
        );
        assert_eq!(e["exit_code"], 7, "{e}");
        assert!(env.list(&[]).is_empty(), "a read token ran a process");
        let _ = s.client.cancel().await;
    });
    assert!(env.list(&[]).is_empty(), "nothing was left running");
}

#[test]
fn mcp_server_of_a_confined_agent_works_through_the_daemons_socket() {
    let env = Env::new();
    let dir = env.work_dir();
    std::fs::write(
        env.policy_path(),
        format!(
            "[actors.agent]\nconfine = true\nwritable = [{:?}]\ncommands = [\"/usr/bin/sleep\", \"/bin/sleep\"]\n",
            dir.display().to_string()
        ),
    )
    .unwrap();
    let _daemon = super::api::ApiDaemon::start(&env);
    for fifo in ["in.fifo", "out.fifo"] {
        let path = std::ffi::CString::new(dir.join(fifo).to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0, "mkfifo");
    }
    let server = env.run(&[
        "--owner",
        "agent",
        "--label",
        "confined mcp server",
        "--",
        "sh",
        "-c",
        &format!(
            "exec '{}' mcp < in.fifo > out.fifo",
            super::common::binary().display()
        ),
    ]);
    let (tx, rx) = std::sync::mpsc::channel();
    let (i, o) = (dir.join("in.fifo"), dir.join("out.fifo"));
    std::thread::spawn(move || {
        let to = std::fs::OpenOptions::new().write(true).open(i).unwrap();
        let _ = tx.send((to, std::fs::File::open(o).unwrap()));
    });
    let (to_server, from_server) = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the server in the unit opens its fifos");
    block_on(async {
        let to_server = tokio::net::unix::pipe::Sender::from_file(to_server).unwrap();
        let from_server = tokio::net::unix::pipe::Receiver::from_file(from_server).unwrap();
        let s = Session::over(from_server, to_server).await;
        let tools = s.client.list_all_tools().await.expect("tools/list");
        assert_eq!(tools.len(), 14, "{tools:?}");
        let refused = s.call("run", json!({"command": ["echo", "hi"]})).await;
        assert_refused(&refused, &env);
        let child = s.ok("run", json!({"command": ["sleep", "600"]})).await;
        assert_eq!(child["owner"], "agent", "{child}");
        let id = child["id"].as_str().unwrap().to_string();
        assert_eq!(
            child["requested_by"]["parent"], server.id,
            "the daemon took the confined server for the launcher: {child}"
        );
        let stopped = s.ok("stop", json!({"id": id})).await;
        assert_eq!(stopped["outcomes"][0]["id"], id, "{stopped}");
        s.close().await;
    });
    super::common::wait_gone(&server.unit);
    let rec = env.status(&server.id);
    assert_eq!(rec.exit_code, Some(0), "{rec:?}");
}
