//! The HTTP API of the daemon, against the real daemon on the real user
//! manager, with curl as the client (`curl --unix-socket` must work).

use std::collections::BTreeSet;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::common::*;
use serde_json::{json, Value};

/// curl's own deadline for one request.
const REQUEST_SECS: &str = "30";

/// The daemon of `env`'s index with its API on a socket in the test's
/// work directory and on 127.0.0.1:(any port); stopped when dropped.
pub(super) struct ApiDaemon {
    unit: String,
    pub(super) socket: PathBuf,
    pub(super) url: String,
}

impl ApiDaemon {
    pub(super) fn start(env: &Env) -> ApiDaemon {
        let dir = env.work_dir().join("run");
        std::fs::create_dir(&dir).unwrap();
        ApiDaemon::start_in(env, dir)
    }

    /// With its socket in `dir` (which exists).
    fn start_in(env: &Env, dir: PathBuf) -> ApiDaemon {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let unit = format!("rpapi-{}-{n}.service", std::process::id());
        let socket = dir.join("api.sock");
        let mut cmd = Command::new("systemd-run");
        cmd.args(["--user", "--quiet", "--unit", &unit, "-p", "Type=notify"])
            .arg(format!(
                "--setenv=REFINE_PROC_POLICY={}",
                env.policy_path().display()
            ))
            .arg(binary())
            .arg("--state-dir")
            .arg(env.state_dir())
            .args(["daemon", "--listen", "127.0.0.1:0", "--socket"])
            .arg(&socket);
        // Returns after READY=1, which comes once the socket listens.
        let out = output(cmd);
        if out.code != 0 {
            let log = output({
                let mut c = Command::new("journalctl");
                c.args(["--user", "-u", &unit, "--no-pager", "-n", "20"]);
                c
            });
            panic!(
                "the daemon did not start: {}{}\n{}",
                out.stdout, out.stderr, log.stdout
            );
        }
        let mut d = ApiDaemon {
            unit,
            socket,
            url: String::new(),
        };
        let system = d.get("/api/v1/system");
        assert_eq!(system.status, 200, "{}", system.body);
        d.url = system.json()["daemon"]["url"].as_str().unwrap().to_string();
        d
    }

    fn curl(&self) -> Command {
        let mut c = Command::new("curl");
        c.args(["-sS", "-i", "--max-time", REQUEST_SECS, "--unix-socket"])
            .arg(&self.socket);
        c
    }

    fn get(&self, path: &str) -> Resp {
        let mut c = self.curl();
        c.arg(format!("http://localhost{path}"));
        resp(c)
    }

    fn send(&self, method: &str, path: &str, body: Option<Value>, headers: &[&str]) -> Resp {
        let mut c = self.curl();
        c.args(["-X", method]);
        for h in headers {
            c.args(["-H", h]);
        }
        if let Some(b) = body {
            c.args(["-H", "Content-Type: application/json", "--data-binary"])
                .arg(b.to_string());
        }
        c.arg(format!("http://localhost{path}"));
        resp(c)
    }

    fn post(&self, path: &str, body: Value) -> Resp {
        self.send("POST", path, Some(body), &[])
    }
}

impl Drop for ApiDaemon {
    fn drop(&mut self) {
        systemctl(&["stop", &self.unit]);
    }
}

/// One HTTP answer.
struct Resp {
    status: u16,
    headers: String,
    body: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

fn resp(c: Command) -> Resp {
    let out = output(c);
    assert_eq!(out.code, 0, "curl failed: {}", out.stderr);
    // Skip interim answers (100 Continue).
    let mut text = out.stdout.as_str();
    loop {
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
        let status: u16 = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap();
        if status == 100 {
            text = body;
            continue;
        }
        return Resp {
            status,
            headers: head.to_string(),
            body: body.to_string(),
        };
    }
}

/// Checks that the document lists `status` for `method path` (a path of
/// the document, with `{id}`), and that a problem is problem+json.
fn documented(doc: &Value, method: &str, path: &str, r: &Resp) {
    let op = &doc["paths"][path][method];
    assert!(op.is_object(), "{method} {path} is not in the document");
    assert!(
        op["responses"][r.status.to_string()].is_object(),
        "{method} {path} returned {} which the document does not list: {}",
        r.status,
        r.body
    );
    if r.status >= 400 {
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("application/problem+json")
        );
        let p = r.json();
        assert_eq!(p["status"], r.status, "{}", r.body);
        assert!(
            p["detail"].is_string() && p["type"].is_string(),
            "{}",
            r.body
        );
    }
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

#[test]
fn api_every_endpoint_over_the_unix_socket_answers_as_the_cli_and_as_documented() {
    let env = Env::new();
    let d = ApiDaemon::start(&env);
    let doc = d.get("/api/v1/openapi.json");
    assert_eq!(doc.status, 200);
    let doc = doc.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let check = |m: &str, p: &str, r: &Resp| documented(&doc, m, p, r);

    // Run: 201 with the record; then the list is what `list --json` says.
    let work = env.work_dir().display().to_string();
    let run = d.post(
        "/api/v1/processes",
        json!({"command": ["sleep", "600"], "owner": "agent", "label": "api sleeper",
               "metadata": {"workflow": "wf-api"}, "cwd": work, "limits": {"memory_max": "256M"}}),
    );
    check("post", "/api/v1/processes", &run);
    assert_eq!(run.status, 201, "{}", run.body);
    let rec = run.json();
    let id = rec["id"].as_str().unwrap().to_string();
    assert_eq!(rec["state"], "running");
    assert_eq!(rec["limits"]["memory_max"], 256 << 20);
    assert_eq!(
        run.header("location"),
        Some(format!("/api/v1/processes/{id}"))
    );
    assert_eq!(show(rec["unit"].as_str().unwrap(), "ActiveState"), "active");

    let list = d.get("/api/v1/processes?owner=agent");
    check("get", "/api/v1/processes", &list);
    let api_list = list.json();
    let cli_list: Value = env.ok(&["list", "--json", "--owner", "agent"]).json();
    assert_eq!(api_list.as_array().unwrap().len(), 1);
    assert_eq!(keys(&api_list[0]), keys(&cli_list[0]));
    assert_eq!(api_list[0]["id"], cli_list[0]["id"]);
    let bad = d.get("/api/v1/processes?owner=robot");
    check("get", "/api/v1/processes", &bad);
    assert_eq!(bad.status, 400);

    let one = d.get(&format!("/api/v1/processes/{id}"));
    check("get", "/api/v1/processes/{id}", &one);
    let cli_status: Value = env.ok(&["status", "--json", &id]).json();
    assert_eq!(keys(&one.json()), keys(&cli_status));
    assert_eq!(one.json()["systemd"]["active_state"], "active");
    let missing = d.get("/api/v1/processes/zzzzzzzz");
    check("get", "/api/v1/processes/{id}", &missing);
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["exit_code"], 3);

    let act = |action: &str| {
        let r = d.send(
            "POST",
            &format!("/api/v1/processes/{id}/{action}"),
            None,
            &[],
        );
        check("post", "/api/v1/processes/{id}/{action}", &r);
        assert_eq!(r.status, 200, "{action}: {}", r.body);
        r.json()
    };
    assert_eq!(act("pause")[0]["state"], "paused");
    assert_eq!(
        show(rec["unit"].as_str().unwrap(), "FreezerState"),
        "frozen"
    );
    assert_eq!(act("resume")[0]["state"], "running");
    let limits = d.post(
        &format!("/api/v1/processes/{id}/limits"),
        json!({"memory_max": "512M"}),
    );
    check("post", "/api/v1/processes/{id}/limits", &limits);
    assert_eq!(limits.status, 200, "{}", limits.body);
    assert_eq!(
        show(rec["unit"].as_str().unwrap(), "MemoryMax"),
        (512u64 << 20).to_string()
    );
    let no_limit = d.post(&format!("/api/v1/processes/{id}/limits"), json!({}));
    check("post", "/api/v1/processes/{id}/limits", &no_limit);
    assert_eq!(no_limit.status, 422);
    assert!(no_limit.json()["hint"].is_string());
    // The API names its JSON fields, not the CLI's flags.
    let hint = no_limit.json()["hint"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        hint.contains("memory_max") && !hint.contains("--memory-max"),
        "{hint}"
    );
    let kill = d.post(
        &format!("/api/v1/processes/{id}/kill"),
        json!({"signal": "CONT"}),
    );
    check("post", "/api/v1/processes/{id}/kill", &kill);
    assert_eq!(kill.status, 200, "{}", kill.body);
    let forget_running = d.send("DELETE", &format!("/api/v1/processes/{id}"), None, &[]);
    check("delete", "/api/v1/processes/{id}", &forget_running);
    assert_eq!(forget_running.status, 409);
    let group = d.post("/api/v1/groups/pause", json!({"workflow": "wf-api"}));
    check("post", "/api/v1/groups/{action}", &group);
    assert_eq!(group.status, 200, "{}", group.body);
    let group = d.post("/api/v1/groups/resume", json!({"workflow": "wf-api"}));
    assert_eq!(group.status, 200, "{}", group.body);
    let two = d.post(
        "/api/v1/groups/pause",
        json!({"workflow": "w", "all": true}),
    );
    check("post", "/api/v1/groups/{action}", &two);
    assert_eq!(two.status, 422);
    assert_eq!(act("restart")[0]["id"], id.as_str());
    assert_eq!(act("stop")[0]["state"], "stopped");
    let forget = d.send("DELETE", &format!("/api/v1/processes/{id}"), None, &[]);
    check("delete", "/api/v1/processes/{id}", &forget);
    assert_eq!(forget.status, 200, "{}", forget.body);
    assert_eq!(env.cmd(&["status", &id]).code, 3);

    // Bad input: nothing starts, with the core's hint.
    let typo = d.post(
        "/api/v1/processes",
        json!({"command": ["no-such-command-x"], "cwd": work}),
    );
    check("post", "/api/v1/processes", &typo);
    assert_eq!(typo.status, 422);
    assert_eq!(typo.json()["exit_code"], 2);
    let unknown = d.post(
        "/api/v1/processes",
        json!({"command": ["sleep", "1"], "colour": 1}),
    );
    check("post", "/api/v1/processes", &unknown);
    assert_eq!(unknown.status, 422);
    let syntax = d.send(
        "POST",
        "/api/v1/processes",
        None,
        &["Content-Type: application/json"],
    );
    assert!(matches!(syntax.status, 400 | 422), "{}", syntax.status);
    let adopt = d.post("/api/v1/processes/adopt", json!({"pid": 999_999_999u32}));
    check("post", "/api/v1/processes/adopt", &adopt);
    assert_eq!(adopt.status, 404, "{}", adopt.body);

    // Logs and events pages.
    let talker = d.post(
        "/api/v1/processes",
        json!({"command": ["sh", "-c", "for i in 1 2 3; do echo line-$i; done; sleep 600"], "cwd": work}),
    );
    let talker = talker.json()["id"].as_str().unwrap().to_string();
    wait_journal_lines(&format!("refine-user-helper-{talker}"), 3);
    let logs = d.get(&format!("/api/v1/processes/{talker}/logs?lines=2"));
    check("get", "/api/v1/processes/{id}/logs", &logs);
    let page = logs.json();
    let messages: Vec<&str> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(messages, ["line-2", "line-3"]);
    let cursor = page["entries"][0]["cursor"].as_str().unwrap();
    let after = d.get(&format!(
        "/api/v1/processes/{talker}/logs?after={}",
        urlencode(cursor)
    ));
    assert_eq!(
        after.json()["entries"].as_array().unwrap().len(),
        1,
        "{}",
        after.body
    );
    let bad_cursor = d.get(&format!("/api/v1/processes/{talker}/logs?after=%0a"));
    check("get", "/api/v1/processes/{id}/logs", &bad_cursor);
    assert_eq!(bad_cursor.status, 422);
    let events = d.get(&format!("/api/v1/events?id={talker}"));
    check("get", "/api/v1/events", &events);
    let events = events.json();
    assert_eq!(events["events"][0]["event"]["event"], "started");
    let next = events["next"].as_str().unwrap();
    let none_after = d.get(&format!("/api/v1/events?id={talker}&after={next}"));
    assert_eq!(none_after.json()["events"].as_array().unwrap().len(), 0);

    // The system, the policy.
    let system = d.get("/api/v1/system");
    check("get", "/api/v1/system", &system);
    let system = system.json();
    assert!(system["doctor"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["name"] == "user-bus"));
    assert_eq!(system["owners"].as_array().unwrap().len(), 7);
    assert!(system["pauses"]["active"].is_array());
    let policy = d.get("/api/v1/policy");
    check("get", "/api/v1/policy", &policy);
    let cli_policy: Value = env.ok(&["policy", "show", "--json"]).json();
    assert_eq!(policy.json(), cli_policy);
    let verdict = d.post(
        "/api/v1/policy/check",
        json!({"as": "agent", "command": ["sleep", "1"]}),
    );
    check("post", "/api/v1/policy/check", &verdict);
    assert_eq!(verdict.status, 200, "{}", verdict.body);
    assert_eq!(verdict.json()["launch"]["allowed"], true);
    let nowhere = d.get("/api/v1/nowhere");
    assert_eq!(nowhere.status, 404);
    assert_eq!(nowhere.json()["status"], 404);
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn api_idempotency_key_a_retried_run_never_starts_a_process_twice() {
    let env = Env::new();
    let d = ApiDaemon::start(&env);
    let body = json!({"command": ["sleep", "600"], "cwd": env.work_dir().display().to_string()});
    let key = "Idempotency-Key: 9b2f-retry-1";
    let first = d.send("POST", "/api/v1/processes", Some(body.clone()), &[key]);
    assert_eq!(first.status, 201, "{}", first.body);
    let again = d.send("POST", "/api/v1/processes", Some(body.clone()), &[key]);
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.header("idempotent-replayed").as_deref(), Some("true"));
    assert_eq!(again.json()["id"], first.json()["id"]);
    assert_eq!(env.list(&[]).len(), 1, "a retry started a second process");
    // The same key for another request is refused, and starts nothing.
    let other = json!({"command": ["sleep", "601"], "cwd": env.work_dir().display().to_string()});
    let reused = d.send("POST", "/api/v1/processes", Some(other), &[key]);
    assert_eq!(reused.status, 422, "{}", reused.body);
    assert_eq!(env.list(&[]).len(), 1);
    // A run refused before anything started frees its key.
    let bad =
        json!({"command": ["no-such-command-x"], "cwd": env.work_dir().display().to_string()});
    let k2 = "Idempotency-Key: 9b2f-retry-2";
    assert_eq!(
        d.send("POST", "/api/v1/processes", Some(bad.clone()), &[k2])
            .status,
        422
    );
    assert_eq!(
        d.send("POST", "/api/v1/processes", Some(bad), &[k2]).status,
        422
    );
}

#[test]
fn api_a_managed_agent_calling_the_socket_is_refused_exactly_as_its_cli_call() {
    let env = Env::new();
    std::fs::write(
        env.policy_path(),
        "[actors.agent]\ncommands = [\"/usr/bin/sleep\", \"/bin/sleep\", \"/usr/bin/curl\", \"/bin/sh\", \"/usr/bin/sh\"]\n",
    )
    .unwrap();
    let d = ApiDaemon::start(&env);
    let victim = env.run(&["--owner", "quality", "--", "sleep", "600"]);
    let script = format!(
        r#"S='{sock}'; R='{bin}'
           c() {{ f=$1; shift; curl -sS --max-time 30 --unix-socket "$S" -o "$f" -w '%{{http_code}}' "$@"; }}
           c api-run.json -X POST -H 'Content-Type: application/json' \
             --data-binary '{{"command": ["/usr/bin/true"]}}' http://localhost/api/v1/processes > api-run.code
           "$R" run -- /usr/bin/true 2> cli-run.err; echo $? > cli-run.code
           c api-stop.json -X POST http://localhost/api/v1/processes/{victim}/stop > api-stop.code
           "$R" stop {victim} 2> cli-stop.err; echo $? > cli-stop.code
           c api-code.json -X POST http://localhost/api/v1/web/code > api-code.code
           c api-token.json -X POST -H 'Content-Type: application/json' --data-binary '{{"scope": "control"}}' \
             http://localhost/api/v1/tokens > api-token.code
           c api-ok.json -X POST -H 'Content-Type: application/json' \
             --data-binary '{{"command": ["/usr/bin/sleep", "600"], "cwd": "/"}}' http://localhost/api/v1/processes > api-ok.code"#,
        sock = d.socket.display(),
        bin = binary().display(),
        victim = victim.id,
    );
    let agent = env.run(&["--owner", "agent", "--", "sh", "-c", &script]);
    wait_gone(&agent.unit);
    let read = |f: &str| std::fs::read_to_string(env.work_dir().join(f)).unwrap_or_default();
    let problem = |f: &str| -> Value {
        serde_json::from_str(&read(f)).unwrap_or_else(|_| panic!("{f}: {}", read(f)))
    };
    // The same refusal, the same message and exit class, as the CLI's.
    for (api, cli) in [("api-run", "cli-run"), ("api-stop", "cli-stop")] {
        assert_eq!(
            read(&format!("{api}.code")),
            "403",
            "{}",
            read(&format!("{api}.json"))
        );
        assert_eq!(
            read(&format!("{cli}.code")).trim(),
            "7",
            "{}",
            read(&format!("{cli}.err"))
        );
        let p = problem(&format!("{api}.json"));
        assert_eq!(p["exit_code"], 7);
        let cli_err = read(&format!("{cli}.err"));
        let detail = p["detail"].as_str().unwrap();
        assert!(
            cli_err.contains(detail),
            "the API said {detail:?}, the CLI {cli_err:?}"
        );
    }
    assert_eq!(show(&victim.unit, "ActiveState"), "active");
    // It cannot become a person through a session or a token.
    assert_eq!(read("api-code.code"), "403", "{}", read("api-code.json"));
    assert_eq!(read("api-token.code"), "403", "{}", read("api-token.json"));
    // What its policy allows, it may do, as its own child.
    assert_eq!(read("api-ok.code"), "201", "{}", read("api-ok.json"));
    let child = problem("api-ok.json");
    assert_eq!(child["owner"], "agent");
    assert_eq!(child["requested_by"]["parent"], agent.id.as_str());
    // The refusals are audited with the agent as actor, as the CLI's are.
    let events: Vec<Value> = std::fs::read_to_string(env.state_dir().join("events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|e: &Value| e["event"] == "refused")
        .collect();
    assert_eq!(events.len(), 4, "{events:?}");
    assert!(events
        .iter()
        .all(|e| e["actor"] == "agent" && e["caller"] == agent.id.as_str()));
}

/// A request over TCP to the daemon's listener.
fn tcp(d: &ApiDaemon, method: &str, path: &str, headers: &[&str], body: Option<&str>) -> Resp {
    let mut c = Command::new("curl");
    c.args(["-sS", "-i", "--max-time", REQUEST_SECS, "-X", method]);
    for h in headers {
        c.args(["-H", h]);
    }
    if let Some(b) = body {
        c.args(["-H", "Content-Type: application/json", "--data-binary", b]);
    }
    c.arg(format!("{}{}", d.url.trim_end_matches('/'), path));
    resp(c)
}

#[test]
fn api_tcp_without_a_session_is_401_and_a_wrong_host_or_a_cross_origin_post_is_refused() {
    let env = Env::new();
    let d = ApiDaemon::start(&env);
    let origin = format!("Origin: {}", d.url.trim_end_matches('/'));
    let none = tcp(&d, "GET", "/api/v1/processes", &[], None);
    assert_eq!(none.status, 401, "{}", none.body);
    assert_eq!(
        none.header("content-type").as_deref(),
        Some("application/problem+json")
    );
    // DNS rebinding: the attacker's name resolves to 127.0.0.1.
    let rebound = tcp(&d, "GET", "/", &["Host: attacker.example"], None);
    assert_eq!(rebound.status, 403);
    let cross = tcp(
        &d,
        "POST",
        "/api/v1/session",
        &["Origin: http://attacker.example"],
        Some(r#"{"code":"x"}"#),
    );
    assert_eq!(cross.status, 403);
    // A code from `refine-proc web` (over the socket) makes one session.
    let web = output({
        let mut c = env.command(&["web", "--json", "--socket"]);
        c.arg(&d.socket);
        c
    });
    assert_eq!(web.code, 0, "{}", web.stderr);
    let web: Value = serde_json::from_str(&web.stdout).unwrap();
    let code = web["code"].as_str().unwrap();
    assert_eq!(web["url"].as_str().unwrap(), format!("{}#{code}", d.url));
    let body = json!({ "code": code }).to_string();
    let session = tcp(&d, "POST", "/api/v1/session", &[&origin], Some(&body));
    assert_eq!(session.status, 204, "{}", session.body);
    let cookie = session.header("set-cookie").unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let spent = tcp(&d, "POST", "/api/v1/session", &[&origin], Some(&body));
    assert_eq!(spent.status, 401, "a code works once");
    let jar = format!("Cookie: {}", cookie.split(';').next().unwrap());
    let list = tcp(&d, "GET", "/api/v1/processes", &[&jar], None);
    assert_eq!(list.status, 200, "{}", list.body);
    assert!(list.header("access-control-allow-origin").is_none());
    // With the session, a cross-origin change is still refused, and so is
    // a change without Origin (not from the page).
    let run = r#"{"command": ["sleep", "600"], "cwd": "/"}"#;
    let evil = tcp(
        &d,
        "POST",
        "/api/v1/processes",
        &[&jar, "Origin: http://attacker.example"],
        Some(run),
    );
    assert_eq!(evil.status, 403);
    let blind = tcp(&d, "POST", "/api/v1/processes", &[&jar], Some(run));
    assert_eq!(blind.status, 403);
    assert!(
        env.list(&[]).is_empty(),
        "a refused request started something"
    );
    let stream = tcp(
        &d,
        "GET",
        "/api/v1/events?follow=true",
        &[&jar, "Origin: http://attacker.example"],
        None,
    );
    assert_eq!(stream.status, 403);
    let from_page = tcp(&d, "POST", "/api/v1/processes", &[&jar, &origin], Some(run));
    assert_eq!(from_page.status, 201, "{}", from_page.body);
    assert_eq!(
        from_page.json()["requested_by"]["acting_owner"],
        Value::Null,
        "acts as person"
    );
    // Tokens: read may only read.
    let token = |scope: &str| {
        let out = output({
            let mut c = env.command(&["web", "--token", scope, "--socket"]);
            c.arg(&d.socket);
            c
        });
        assert_eq!(out.code, 0, "{}", out.stderr);
        format!("Authorization: Bearer {}", out.stdout.trim())
    };
    let read = token("read");
    assert_eq!(
        tcp(&d, "GET", "/api/v1/processes", &[&read], None).status,
        200
    );
    let id = from_page.json()["id"].as_str().unwrap().to_string();
    let stop = format!("/api/v1/processes/{id}/stop");
    assert_eq!(tcp(&d, "POST", &stop, &[&read], None).status, 403);
    let control = token("control");
    assert_eq!(tcp(&d, "POST", &stop, &[&control], None).status, 200);
    let mode = std::fs::metadata(env.state_dir().join("secrets/api-tokens.json")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
    let wrong = tcp(
        &d,
        "GET",
        "/api/v1/processes",
        &["Authorization: Bearer 00"],
        None,
    );
    assert_eq!(wrong.status, 401);
}

/// One server-sent event.
#[derive(Debug, Clone)]
struct Sse {
    id: Option<String>,
    event: Option<String>,
    data: String,
}

/// A stream read by curl -N; the connection closes when dropped.
struct Stream {
    child: Child,
    rx: std::sync::mpsc::Receiver<Sse>,
}

impl Stream {
    fn open(d: &ApiDaemon, path: &str, last_id: Option<&str>) -> Stream {
        let mut c = d.curl();
        c.args(["-N", "--max-time", "120"]);
        if let Some(id) = last_id {
            c.args(["-H", &format!("Last-Event-ID: {id}")]);
        }
        c.arg(format!("http://localhost{path}"));
        let mut child = c
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut cur = Sse {
                id: None,
                event: None,
                data: String::new(),
            };
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                let line = line.trim_end_matches('\r');
                if line.is_empty() {
                    if !cur.data.is_empty() || cur.event.is_some() {
                        let _ = tx.send(cur.clone());
                    }
                    cur = Sse {
                        id: None,
                        event: None,
                        data: String::new(),
                    };
                } else if let Some(v) = line.strip_prefix("id:") {
                    cur.id = Some(v.trim_start().to_string());
                } else if let Some(v) = line.strip_prefix("event:") {
                    cur.event = Some(v.trim_start().to_string());
                } else if let Some(v) = line.strip_prefix("data:") {
                    cur.data.push_str(v.strip_prefix(' ').unwrap_or(v));
                }
            }
        });
        Stream { child, rx }
    }

    /// Events until `done` says so; fails the test after `within`.
    fn until(&self, within: Duration, mut done: impl FnMut(&Sse) -> bool) -> Vec<Sse> {
        let deadline = Instant::now() + within;
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let e = self.rx.recv_timeout(left).unwrap_or_else(|_| {
                panic!("the stream gave no more within {within:?}; got {got:?}")
            });
            let stop = done(&e);
            got.push(e);
            if stop {
                return got;
            }
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn data(e: &Sse) -> Value {
    serde_json::from_str(&e.data).unwrap_or_else(|_| panic!("not JSON: {e:?}"))
}

#[test]
fn api_event_stream_resumes_from_last_event_id_losing_and_repeating_nothing() {
    let env = Env::new();
    let d = ApiDaemon::start(&env);
    let first = Stream::open(&d, "/api/v1/events?follow=true", None);
    let mut started = 0;
    let ids: Vec<String> = (0..3)
        .map(|_| env.run(&["--", "sleep", "600"]).id)
        .collect();
    let before = first.until(Duration::from_secs(30), |e| {
        started += (data(e)["event"] == "started") as usize;
        started == 3
    });
    let last = before.last().unwrap().id.clone().unwrap();
    drop(first);
    // While nobody listens.
    env.run(&["--", "sleep", "601"]);
    env.ok(&["stop", &ids[0]]);
    let marker = env.run(&["--label", "marker", "--", "sleep", "602"]);
    let second = Stream::open(&d, "/api/v1/events?follow=true", Some(&last));
    let after = second.until(Duration::from_secs(30), |e| {
        data(e)["event"] == "started" && data(e)["id"] == marker.id.as_str()
    });
    let got: Vec<Value> = before.iter().chain(&after).map(data).collect();
    let file: Vec<Value> = std::fs::read_to_string(env.state_dir().join("events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(file.len() >= got.len());
    assert_eq!(
        got,
        file[..got.len()],
        "lost or repeated across the reconnect"
    );
    let all_ids: BTreeSet<&str> = before
        .iter()
        .chain(&after)
        .filter_map(|e| e.id.as_deref())
        .collect();
    assert_eq!(all_ids.len(), got.len(), "every event has its own id");
    // A filtered stream, and a page, agree with the history.
    let only = Stream::open(
        &d,
        &format!("/api/v1/events?follow=true&id={}", ids[0]),
        None,
    );
    let mine = only.until(Duration::from_secs(30), |e| data(e)["event"] == "stopped");
    assert!(mine.iter().all(|e| data(e)["id"] == ids[0].as_str()));
}

#[test]
fn api_log_stream_resumes_from_last_event_id_losing_and_repeating_nothing() {
    let env = Env::new();
    let d = ApiDaemon::start(&env);
    let talker = env.run(&[
        "--",
        "sh",
        "-c",
        "for i in $(seq 1 40); do echo n-$i; sleep 0.1; done; sleep 600",
    ]);
    let path = format!(
        "/api/v1/processes/{}/logs?follow=true&lines=1000",
        talker.id
    );
    let number = |e: &Sse| -> u32 {
        data(e)["message"]
            .as_str()
            .unwrap()
            .trim_start_matches("n-")
            .parse()
            .unwrap()
    };
    let first = Stream::open(&d, &path, None);
    let before = first.until(Duration::from_secs(30), |e| number(e) >= 10);
    let last = before
        .last()
        .unwrap()
        .id
        .clone()
        .expect("a cursor as the id");
    drop(first);
    wait_journal_lines(&format!("refine-user-helper-{}", talker.id), 25);
    let second = Stream::open(&d, &path, Some(&last));
    let after = second.until(Duration::from_secs(30), |e| number(e) == 40);
    let seen: Vec<u32> = before.iter().chain(&after).map(number).collect();
    assert_eq!(
        seen,
        (1..=40).collect::<Vec<_>>(),
        "lost or repeated across the reconnect"
    );
}

#[test]
fn api_terminal_session_send_and_screen_answer_a_prompt_as_documented() {
    let env = Env::new();
    let d = ApiDaemon::start(&env);
    let doc = d.get("/api/v1/openapi.json").json();
    let check = |m: &str, p: &str, r: &Resp| documented(&doc, m, p, r);
    let work = env.work_dir().display().to_string();
    let script = "printf 'name? '; read n; echo \"hello $n\"; sleep 600";
    let run = d.post(
        "/api/v1/processes",
        json!({"command": ["sh", "-c", script], "pty": true, "pty_size": "30x100", "cwd": work}),
    );
    assert_eq!(run.status, 201, "{}", run.body);
    let id = run.json()["id"].as_str().unwrap().to_string();
    assert!(run.json()["pty"]["socket"].is_string(), "{}", run.body);

    let screen = d.get(&format!(
        "/api/v1/processes/{id}/screen?wait_for=name%3F&timeout=20s"
    ));
    check("get", "/api/v1/processes/{id}/screen", &screen);
    assert_eq!(screen.status, 200, "{}", screen.body);
    let s = screen.json();
    assert_eq!(
        (s["rows"].as_u64(), s["cols"].as_u64()),
        (Some(30), Some(100))
    );
    // The same JSON as `screen --json`.
    let cli: Value = env.ok(&["screen", "--json", &id]).json();
    assert_eq!(keys(&s), keys(&cli));

    let path = format!("/api/v1/processes/{id}/send");
    let bad = d.post(&path, json!({"keys": ["NoSuchKey"]}));
    check("post", "/api/v1/processes/{id}/send", &bad);
    // An unknown key parses but does not fit: 422, like an unknown owner.
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert!(bad.json()["hint"].as_str().unwrap().contains("C-a"));
    let sent = d.post(&path, json!({"text": "bob $HOME;`id`", "keys": ["Enter"]}));
    check("post", "/api/v1/processes/{id}/send", &sent);
    assert_eq!(sent.status, 204, "{}", sent.body);
    let after = d.get(&format!(
        "/api/v1/processes/{id}/screen?wait_for=hello%20bob&timeout=20s"
    ));
    assert_eq!(after.status, 200, "{}", after.body);
    let lines: Vec<String> = serde_json::from_value(after.json()["lines"].clone()).unwrap();
    assert!(
        lines.iter().any(|l| l == "hello bob $HOME;`id`"),
        "{lines:?}"
    );

    // Not a session: refused, with the hint.
    let plain = env.run(&["--", "sleep", "600"]);
    let r = d.get(&format!("/api/v1/processes/{}/screen", plain.id));
    check("get", "/api/v1/processes/{id}/screen", &r);
    assert_eq!(r.status, 409, "{}", r.body);
    env.ok(&["kill", &id]);
    env.ok(&["kill", &plain.id]);
}

/// A terminal WebSocket (`GET /api/v1/processes/{id}/terminal`) as a
/// client sees it: what it drew and the control messages it got.
struct Term<S> {
    ws: tokio_tungstenite::WebSocketStream<S>,
    /// Every binary frame's bytes, in order.
    output: Vec<u8>,
    /// Every text frame, parsed.
    messages: Vec<Value>,
    /// The close frame's code and reason, once closed.
    closed: Option<(u16, String)>,
}

/// How long a terminal test waits for one thing to show.
const TERM_WAIT: Duration = Duration::from_secs(20);

/// Opens the terminal of `path` on `stream` with `headers`; the HTTP
/// status and body when the upgrade is refused.
async fn open_term<S>(
    stream: S,
    url: &str,
    headers: &[(&str, &str)],
) -> Result<Term<S>, (u16, String)>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let mut req = url.into_client_request().unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    match tokio_tungstenite::client_async(req, stream).await {
        Ok((ws, _)) => Ok(Term {
            ws,
            output: Vec::new(),
            messages: Vec::new(),
            closed: None,
        }),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err((
            r.status().as_u16(),
            String::from_utf8_lossy(r.body().as_deref().unwrap_or_default()).into_owned(),
        )),
        Err(e) => panic!("the WebSocket handshake failed: {e}"),
    }
}

impl<S> Term<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    /// Reads until `done` holds, within [`TERM_WAIT`].
    async fn until(&mut self, what: &str, mut done: impl FnMut(&Self) -> bool) {
        use futures_util::StreamExt as _;
        use tokio_tungstenite::tungstenite::Message;
        let deadline = tokio::time::Instant::now() + TERM_WAIT;
        while !done(self) {
            let next = tokio::time::timeout_at(deadline, self.ws.next()).await;
            match next {
                Err(_) => panic!(
                    "no {what} within {TERM_WAIT:?}: drew {:?}, said {:?}, closed {:?}",
                    String::from_utf8_lossy(&self.output),
                    self.messages,
                    self.closed
                ),
                Ok(Some(Ok(Message::Binary(b)))) => self.output.extend_from_slice(&b),
                Ok(Some(Ok(Message::Text(t)))) => self
                    .messages
                    .push(serde_json::from_str(t.as_str()).unwrap()),
                Ok(Some(Ok(Message::Close(f)))) => {
                    self.closed = Some(f.map_or((1005, String::new()), |f| {
                        (u16::from(f.code), f.reason.to_string())
                    }))
                }
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(_)) | None) => {
                    assert!(done(self), "closed before {what}: {:?}", self.closed);
                    return;
                }
            }
        }
    }

    /// Reads until `text` was drawn (searching only what is new each time:
    /// a flood must not make the test client the bottleneck).
    async fn until_drawn(&mut self, text: &str) {
        let needle = text.as_bytes().to_vec();
        let mut from = 0;
        self.until(&format!("{text:?} drawn"), move |t| {
            let found = t.output[from..]
                .windows(needle.len())
                .any(|w| w == needle.as_slice());
            from = t.output.len().saturating_sub(needle.len());
            found
        })
        .await
    }

    /// The first message named `key`, once one came.
    async fn message(&mut self, key: &str) -> Value {
        self.until(&format!("a {key} message"), |t| {
            t.messages.iter().any(|m| m.get(key).is_some())
        })
        .await;
        let found = self.messages.iter().find(|m| m.get(key).is_some());
        found.unwrap()[key].clone()
    }

    async fn send(&mut self, m: tokio_tungstenite::tungstenite::Message) {
        use futures_util::SinkExt as _;
        self.ws.send(m).await.expect("send to the terminal");
    }
}

/// Runs `f` on a fresh runtime, bounded: every terminal test has a timeout.
fn within<F: std::future::Future>(f: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(120), f)
            .await
            .expect("the terminal test timed out")
    })
}

/// A browser session's cookie header, for a code from `refine-proc web`.
fn session_cookie(env: &Env, d: &ApiDaemon) -> String {
    let web = output({
        let mut c = env.command(&["web", "--json", "--socket"]);
        c.arg(&d.socket);
        c
    });
    assert_eq!(web.code, 0, "{}", web.stderr);
    let web: Value = serde_json::from_str(&web.stdout).unwrap();
    let body = json!({ "code": web["code"] }).to_string();
    let origin = format!("Origin: {}", d.url.trim_end_matches('/'));
    let session = tcp(d, "POST", "/api/v1/session", &[&origin], Some(&body));
    assert_eq!(session.status, 204, "{}", session.body);
    let cookie = session.header("set-cookie").unwrap();
    cookie.split(';').next().unwrap().to_string()
}

/// Starts `sh -c SCRIPT` as a terminal session.
fn start_session(env: &Env, script: &str) -> Rec {
    env.run(&["--pty", "--", "sh", "-c", script])
}

#[test]
fn api_terminal_websocket_shows_the_screen_first_then_types_and_a_reconnect_redraws() {
    let env = Env::new();
    let d = ApiDaemon::start(&env);
    let s = start_session(&env, "printf 'name? '; read x; echo got:$x; sleep 600");
    env.ok(&["screen", &s.id, "--wait-for", "name?", "--timeout", "20s"]);
    let url = format!("ws://localhost/api/v1/processes/{}/terminal", s.id);
    within(async {
        use tokio_tungstenite::tungstenite::Message;
        let sock = tokio::net::UnixStream::connect(&d.socket).await.unwrap();
        let t0 = Instant::now();
        let mut t = open_term(sock, &url, &[]).await.unwrap();
        // The screen first: the prompt printed before anyone connected.
        let hello = t.message("hello").await;
        assert_eq!(hello["write"], true, "{hello}");
        assert_eq!(hello["id"], s.id.as_str());
        assert_eq!(
            (hello["rows"].as_u64(), hello["cols"].as_u64()),
            (Some(24), Some(80))
        );
        assert!(hello.get("read_only").is_none(), "{hello}");
        t.until_drawn("name?").await;
        let drawn = t0.elapsed();
        assert!(
            t.messages[0].get("hello").is_some(),
            "hello first: {:?}",
            t.messages
        );
        // Hostile text is data: the shell reads it as a line.
        let t1 = Instant::now();
        t.send(Message::binary(b"bob $HOME;`id`\r".to_vec())).await;
        t.until_drawn("got:bob $HOME;`id`").await;
        println!(
            "terminal: connected and drew the screen in {drawn:?}; a line typed came back in {:?}",
            t1.elapsed()
        );
        // A bad control message is refused, the view stays.
        t.send(Message::text(r#"{"exec":"sh"}"#)).await;
        let refused = t.message("refused").await;
        assert_eq!(refused["status"], 400, "{refused}");
        t.send(Message::text(r#"{"resize":{"rows":30,"cols":100}}"#))
            .await;
        drop(t);
        // A reconnect (a browser refresh) draws the screen again.
        let sock = tokio::net::UnixStream::connect(&d.socket).await.unwrap();
        let mut again = open_term(sock, &url, &[]).await.unwrap();
        let hello = again.message("hello").await;
        assert_eq!(
            (hello["rows"].as_u64(), hello["cols"].as_u64()),
            (Some(30), Some(100)),
            "the resize reached the session"
        );
        again.until_drawn("got:bob").await;
        again.until_drawn("name?").await;
        // The program's end closes the view normally, after an exit message.
        env.ok(&["kill", &s.id]);
        again.until("the close", |t| t.closed.is_some()).await;
        assert_eq!(again.closed.as_ref().unwrap().0, 1000, "{:?}", again.closed);
        assert!(
            again.messages.iter().any(|m| m.get("exit").is_some()),
            "{:?}",
            again.messages
        );
    });
    // Not a WebSocket: a problem with a hint, as documented.
    let doc = d.get("/api/v1/openapi.json").json();
    let plain = d.get(&format!("/api/v1/processes/{}/terminal", s.id));
    documented(&doc, "get", "/api/v1/processes/{id}/terminal", &plain);
    assert_eq!(plain.status, 400, "{}", plain.body);
    assert!(plain.json()["hint"].as_str().unwrap().contains("WebSocket"));
}

/// Regression: a client that does not size the session (a viewer, or a
/// writer without the keyboard) was never told the writer resized it, and
/// kept drawing at the old size. Now every client gets `size` (on
/// connect, then at each change) and a fresh screen at the new size.
#[test]
fn api_terminal_websocket_viewer_learns_the_size_when_the_writer_resizes() {
    let env = Env::new();
    let d = ApiDaemon::start(&env);
    let s = start_session(&env, "echo ready; sleep 600");
    env.ok(&["screen", &s.id, "--wait-for", "ready", "--timeout", "20s"]);
    let url = format!("ws://localhost/api/v1/processes/{}/terminal", s.id);
    within(async {
        use tokio_tungstenite::tungstenite::Message;
        let connect = || tokio::net::UnixStream::connect(&d.socket);
        let mut writer = open_term(connect().await.unwrap(), &url, &[])
            .await
            .unwrap();
        assert_eq!(writer.message("lease").await["held"], true);
        let mut viewer = open_term(connect().await.unwrap(), &url, &[])
            .await
            .unwrap();
        // On connect: the session's size, before the screen.
        let size = viewer.message("size").await;
        assert_eq!(
            (size["rows"].as_u64(), size["cols"].as_u64()),
            (Some(24), Some(80))
        );
        viewer.until_drawn("ready").await;
        assert_eq!(viewer.message("lease").await["held"], false);
        let (said, drawn) = (viewer.messages.len(), viewer.output.len());
        writer
            .send(Message::text(r#"{"resize":{"rows":12,"cols":40}}"#))
            .await;
        viewer
            .until("the new size", |t| {
                t.messages[said..]
                    .iter()
                    .any(|m| m["size"] == json!({"rows": 12, "cols": 40}))
            })
            .await;
        // Then the screen drawn anew at it (it clears first).
        let fresh = |t: &Term<_>| String::from_utf8_lossy(&t.output[drawn..]).into_owned();
        viewer
            .until("the screen again", |t| fresh(t).contains("ready"))
            .await;
        let redrawn = fresh(&viewer);
        assert!(redrawn.contains("\x1b[2J"), "{redrawn:?}");
        let s: Value = env.ok(&["screen", "--json", &s.id]).json();
        assert_eq!(
            (s["rows"].as_u64(), s["cols"].as_u64()),
            (Some(12), Some(40))
        );
    });
    env.ok(&["kill", &s.id]);
}

#[test]
fn api_terminal_websocket_on_tcp_needs_a_session_and_the_page_origin_and_a_read_token_only_watches()
{
    let env = Env::new();
    let d = ApiDaemon::start(&env);
    let s = start_session(&env, "read x; echo got:$x; sleep 600");
    let addr = d
        .url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let url = format!("ws://{addr}/api/v1/processes/{}/terminal", s.id);
    let origin = d.url.trim_end_matches('/').to_string();
    let cookie = session_cookie(&env, &d);
    let read = output({
        let mut c = env.command(&["web", "--token", "read", "--socket"]);
        c.arg(&d.socket);
        c
    });
    assert_eq!(read.code, 0, "{}", read.stderr);
    let bearer = format!("Bearer {}", read.stdout.trim());
    within(async {
        use tokio_tungstenite::tungstenite::Message;
        let connect = || tokio::net::TcpStream::connect(addr.clone());
        // No session: 401; a session but another origin: 403 (a hijack
        // from another page, which the browser gives the cookie).
        let none = open_term(connect().await.unwrap(), &url, &[("origin", &origin)]).await;
        assert_eq!(none.err().map(|e| e.0), Some(401));
        let evil = open_term(
            connect().await.unwrap(),
            &url,
            &[("cookie", &cookie), ("origin", "http://attacker.example")],
        )
        .await;
        let (status, body) = evil.err().expect("a cross-origin upgrade refused");
        assert_eq!(status, 403, "{body}");
        assert!(body.contains("cross-origin"), "{body}");
        let blind = open_term(connect().await.unwrap(), &url, &[("cookie", &cookie)]).await;
        assert_eq!(
            blind.err().map(|e| e.0),
            Some(403),
            "a cookie without Origin"
        );
        // A read token watches: its input is refused, and never typed.
        let mut viewer = open_term(
            connect().await.unwrap(),
            &url,
            &[("authorization", &bearer)],
        )
        .await
        .unwrap();
        let hello = viewer.message("hello").await;
        assert_eq!(hello["write"], false, "{hello}");
        assert!(
            hello["read_only"]["detail"]
                .as_str()
                .unwrap()
                .contains("read"),
            "{hello}"
        );
        viewer.send(Message::binary(b"intruder\r".to_vec())).await;
        let refused = viewer.message("refused").await;
        assert_eq!(refused["status"], 403, "{refused}");
        assert!(
            refused["hint"]
                .as_str()
                .unwrap()
                .contains("--token control"),
            "{refused}"
        );
        // The page's origin with the cookie types.
        let mut page = open_term(
            connect().await.unwrap(),
            &url,
            &[("cookie", &cookie), ("origin", &origin)],
        )
        .await
        .unwrap();
        assert_eq!(page.message("hello").await["write"], true);
        page.send(Message::text(json!({"input": "friend\r"}).to_string()))
            .await;
        page.until_drawn("got:friend").await;
        // The viewer sees it too, and the intruder's line never arrived.
        viewer.until_drawn("got:friend").await;
        let drawn = String::from_utf8_lossy(&viewer.output).into_owned();
        assert!(!drawn.contains("got:intruder"), "{drawn}");
    });
    let screen: Value = env.ok(&["screen", "--json", &s.id]).json();
    assert!(!screen.to_string().contains("intruder"), "{screen}");
    // The refused input is audited, once.
    let refusals: Vec<Value> = std::fs::read_to_string(env.state_dir().join("events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|e: &Value| e["event"] == "refused" && e["action"] == "send input to")
        .collect();
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    env.ok(&["kill", &s.id]);
}

/// A WebSocket client small enough to run as a managed process: opens
/// the terminal at URL_PATH on the Unix socket SOCK, writes the hello to
/// hello.json, types "intruder" and writes the answer to refused.json.
const WS_AGENT: &str = r#"
import base64, json, os, socket, sys
sock_path, url_path = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX); s.settimeout(20); s.connect(sock_path)
key = base64.b64encode(os.urandom(16)).decode()
s.sendall(("GET %s HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (url_path, key)).encode())
buf = b""
while b"\r\n\r\n" not in buf:
    buf += s.recv(4096)
head, buf = buf.split(b"\r\n\r\n", 1)
assert head.startswith(b"HTTP/1.1 101"), head
def read(n):
    global buf
    while len(buf) < n:
        chunk = s.recv(65536)
        assert chunk, "closed"
        buf += chunk
    out, buf = buf[:n], buf[n:]
    return out
def frame():
    b0, b1 = read(2)
    n = b1 & 127
    if n == 126: n = int.from_bytes(read(2), "big")
    elif n == 127: n = int.from_bytes(read(8), "big")
    return b0 & 15, read(n)
def text():
    while True:
        op, data = frame()
        if op == 1: return json.loads(data)
        assert op != 8, ("closed", data)
json.dump(text(), open("hello.json", "w"))
payload, mask = b"intruder\r", os.urandom(4)
s.sendall(bytes([0x82, 0x80 | len(payload)]) + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(payload)))
while True:
    m = text()
    if "refused" in m:
        json.dump(m, open("refused.json", "w"))
        break
"#;

#[test]
fn api_terminal_websocket_a_managed_agent_outside_its_act_on_only_watches() {
    let env = Env::new();
    std::fs::write(
        env.policy_path(),
        "[actors.agent]\ncommands = [\"/usr/bin/python3\"]\n",
    )
    .unwrap();
    let d = ApiDaemon::start(&env);
    let s = start_session(&env, "read x; echo got:$x; sleep 600");
    let url_path = format!("/api/v1/processes/{}/terminal", s.id);
    let socket = d.socket.display().to_string();
    let agent = env.run(&[
        "--owner",
        "agent",
        "--",
        "/usr/bin/python3",
        "-c",
        WS_AGENT,
        &socket,
        &url_path,
    ]);
    wait_gone(&agent.unit);
    let read = |f: &str| -> Value {
        let text = std::fs::read_to_string(env.work_dir().join(f)).unwrap_or_else(|e| {
            let log = env.cmd(&["logs", &agent.id]);
            panic!("{f}: {e}; the agent said: {}{}", log.stdout, log.stderr)
        });
        serde_json::from_str(&text).unwrap()
    };
    // Its policy (act_on: its descendants) lets it read the session, not type.
    let hello = read("hello.json");
    assert_eq!(hello["hello"]["write"], false, "{hello}");
    let why = hello["hello"]["read_only"]["detail"].as_str().unwrap();
    assert!(why.contains("send input to"), "{why}");
    let refused = read("refused.json");
    assert_eq!(refused["refused"]["status"], 403, "{refused}");
    assert_eq!(refused["refused"]["exit_code"], 7, "{refused}");
    let screen: Value = env.ok(&["screen", "--json", &s.id]).json();
    assert!(!screen.to_string().contains("intruder"), "{screen}");
    env.ok(&["kill", &s.id]);
}

#[test]
fn api_terminal_websocket_a_flood_of_output_is_drawn_to_its_end() {
    let env = Env::new();
    let d = ApiDaemon::start(&env);
    // Carriage returns, not newlines: 2 MB through the terminal, one line
    // in the journal (a flood of journal lines would slow the tests
    // running beside this one).
    let s = start_session(
        &env,
        "read x; seq 1 300000 | tr '\\n' '\\r'; echo; echo flood-done; sleep 600",
    );
    let url = format!("ws://localhost/api/v1/processes/{}/terminal", s.id);
    within(async {
        use tokio_tungstenite::tungstenite::Message;
        let sock = tokio::net::UnixStream::connect(&d.socket).await.unwrap();
        let mut t = open_term(sock, &url, &[]).await.unwrap();
        t.message("hello").await;
        let t0 = Instant::now();
        t.send(Message::binary(b"go\r".to_vec())).await;
        // Whatever was skipped for a slow reader, the end is drawn.
        t.until_drawn("flood-done").await;
        println!(
            "terminal: 300,000 numbers ({} bytes drawn) through the WebSocket in {:?}",
            t.output.len(),
            t0.elapsed()
        );
    });
    env.ok(&[
        "screen",
        &s.id,
        "--wait-for",
        "flood-done",
        "--timeout",
        "5s",
    ]);
    env.ok(&["kill", &s.id]);
}

#[test]
fn api_terminal_websocket_one_writer_at_a_time_and_take_takes_the_keyboard() {
    let env = Env::new();
    let d = ApiDaemon::start(&env);
    let s = start_session(&env, "echo ready; while read l; do echo got:$l; done");
    env.ok(&["screen", &s.id, "--wait-for", "ready", "--timeout", "20s"]);
    let rec: Value = env.ok(&["status", "--json", &s.id]).json();
    let socket = std::path::PathBuf::from(rec["pty"]["socket"].as_str().unwrap());
    let url = format!("ws://localhost/api/v1/processes/{}/terminal", s.id);
    within(async {
        use refine_proc::pty::client::{self, AttachOptions, Event};
        use tokio_tungstenite::tungstenite::Message;
        // Another client (an `attach`) holds the keyboard first.
        let mut other = client::attach(&socket, AttachOptions::default())
            .await
            .unwrap();
        loop {
            match other.events.next().await.unwrap() {
                Some(Event::Lease(held)) => {
                    assert!(held);
                    break;
                }
                Some(_) => {}
                None => panic!("the session closed"),
            }
        }
        let sock = tokio::net::UnixStream::connect(&d.socket).await.unwrap();
        let mut t = open_term(sock, &url, &[]).await.unwrap();
        assert_eq!(t.message("hello").await["write"], true);
        assert_eq!(t.message("lease").await["held"], false);
        // Its keys are the holder's to drop while the other writes.
        t.send(Message::text(json!({"input": "ignored\r"}).to_string()))
            .await;
        t.send(Message::text(r#"{"take":{}}"#)).await;
        t.until("the keyboard", |t| {
            t.messages.iter().any(|m| m["lease"]["held"] == true)
        })
        .await;
        t.send(Message::binary(b"mine\r".to_vec())).await;
        t.until_drawn("got:mine").await;
        let drawn = String::from_utf8_lossy(&t.output).into_owned();
        assert!(!drawn.contains("got:ignored"), "{drawn}");
        // The other client was told it lost the keyboard.
        loop {
            if let Some(Event::Lease(false)) = other.events.next().await.unwrap() {
                break;
            }
        }
    });
    env.ok(&["kill", &s.id]);
}

/// Issue 11.1: with the daemon watching, a run's end comes from systemd's
/// signal (before the exit hook), is in the history with the id the
/// stream gave it, and is recorded once although the hook records it too;
/// a status read as soon as the event arrives already says it.
#[test]
fn api_a_runs_end_seen_by_the_daemon_is_streamed_once_and_in_the_history() {
    let env = Env::new();
    let d = ApiDaemon::start(&env);
    let stream = Stream::open(&d, "/api/v1/events?follow=true", None);
    let ids: Vec<String> = (0..5)
        .map(|_| env.run(&["--", "sh", "-c", "sleep 0.2; exit 3"]).id)
        .collect();
    let mut ended = BTreeSet::new();
    let got = stream.until(Duration::from_secs(60), |e| {
        let v = data(e);
        if v["event"] == "failed" {
            let id = v["id"].as_str().unwrap_or("").to_string();
            // Read at once: the daemon streams an end before its record's
            // fsynced write, and its answers wait for that write.
            let now = d.get(&format!("/api/v1/processes/{id}")).json();
            let state = now["record"]["state"].as_str().or(now["state"].as_str());
            assert_eq!(
                state,
                Some("failed"),
                "status right after the end event: {now:#}"
            );
            ended.insert(id);
        }
        ended.len() == ids.len()
    });
    for id in &ids {
        wait_gone(&env.status(id).unit);
    }
    let file: Vec<Value> = std::fs::read_to_string(env.state_dir().join("events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for id in &ids {
        let ends: Vec<&Value> = file
            .iter()
            .filter(|e| e["id"] == id.as_str() && e["event"] == "failed")
            .collect();
        assert_eq!(ends.len(), 1, "one end per run: {ends:#?}");
        assert_eq!(ends[0]["exit_code"], 3);
        assert_eq!(ends[0]["result"], "exit-code");
        assert!(ends[0]["invocation"]
            .as_str()
            .is_some_and(|i| i.len() == 32));
        let r = env.status(id);
        assert_eq!((r.state.as_str(), r.exit_code), ("failed", Some(3)));
    }
    // What the stream delivered is the history, line for line.
    let streamed: Vec<Value> = got.iter().map(data).collect();
    assert_eq!(streamed, file[..streamed.len()]);
    let sources: BTreeSet<String> = ids
        .iter()
        .map(|id| {
            let raw = d.get(&format!("/api/v1/processes/{id}")).json();
            raw["record"]["exit_source"]
                .as_str()
                .or(raw["exit_source"].as_str())
                .unwrap_or("")
                .to_string()
        })
        .collect();
    // Usually the daemon is first; under load the hook can be.
    assert!(
        sources.iter().all(|s| s == "daemon" || s == "hook"),
        "{sources:?}"
    );
    if !sources.contains("daemon") {
        skip(
            "the exit hook recorded every end before the daemon did: the daemon's path was not exercised",
        );
    }
}

#[test]
fn api_system_shows_each_owners_slice_usage_the_watchdog_and_uptime() {
    let env = Env::new();
    let d = ApiDaemon::start(&env);
    let r = env.run(&["--owner", "agent", "--", "sleep", "600"]);
    let sys = d.get("/api/v1/system").json();
    assert!(sys["daemon"]["uptime_sec"].is_u64(), "{sys:#}");
    // Started without WatchdogSec=: none, and never fed.
    assert!(sys["daemon"].get("watchdog_usec").is_some(), "{sys:#}");
    assert!(sys["daemon"]["watchdog_usec"].is_null(), "{sys:#}");
    assert!(sys["daemon"]["watchdog_last_fed"].is_null(), "{sys:#}");
    let owners = sys["owners"].as_array().unwrap();
    let agent = owners.iter().find(|o| o["owner"] == "agent").unwrap();
    let usage = &agent["usage"];
    assert!(
        usage.is_object(),
        "the agent slice runs a process: {agent:#}"
    );
    // cpu.stat exists in every cgroup; the others need delegation.
    assert!(usage["cpu_usec"].is_u64(), "{agent:#}");
    if usage["tasks"].is_null() {
        skip("the pids controller is not delegated: the slice's tasks are unknown");
    } else {
        assert!(usage["tasks"].as_u64().unwrap() >= 1, "{agent:#}");
    }
    env.ok(&["stop", &r.id]);
}

/// Waits until `fd` can be read, or `timeout` has passed.
fn wait_readable(fd: &impl std::os::fd::AsRawFd, timeout: Duration) {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd, for the duration of the call.
    unsafe { libc::poll(&mut pfd, 1, ms) };
}

#[test]
fn api_a_peer_of_another_uid_is_refused() {
    // tests/run's root-side helper connects as nobody (see there).
    let Some(helper) = std::env::var_os("REFINE_PROC_OTHER_UID_DIR").map(PathBuf::from) else {
        skip("no way to connect as another uid here: tests/run (as root) provides one");
        return;
    };
    let env = Env::new();
    use std::os::unix::fs::PermissionsExt;
    let dir = helper.join(format!("sock-{}", std::process::id()));
    std::fs::create_dir(&dir).unwrap();
    let d = ApiDaemon::start_in(&env, dir.clone());
    // Past the file modes (the first barrier), so that the daemon's own
    // check of the peer's uid is what answers.
    let open = |p: &std::path::Path, m| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
    };
    open(&dir, 0o711);
    open(&d.socket, 0o666);
    let req = helper.join(format!("t{}.req", std::process::id()));
    let res = req.with_extension("res");
    std::fs::write(&req, d.socket.as_os_str().as_encoded_bytes()).unwrap();
    // The helper renames its answer into place, then removes the request:
    // that removal is the signal (its directory is not readable to us, so
    // it cannot be watched; the request, ours, can).
    let mut removed = inotify::Inotify::init().unwrap();
    let watched = removed.watches().add(
        &req,
        inotify::WatchMask::DELETE_SELF | inotify::WatchMask::ATTRIB,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let code = loop {
        if let Ok(c) = std::fs::read_to_string(&res) {
            break c.trim().to_string();
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "the other-uid helper did not answer");
        if watched.is_ok() {
            wait_readable(&removed, left);
            let _ = removed.read_events(&mut [0u8; 1024]);
        }
        // (Not watched: the request was gone already, so its answer is there.)
    };
    let _ = std::fs::remove_file(&res);
    assert_eq!(code, "403", "a peer of another uid gets 403");
    // The owner still gets in.
    assert_eq!(d.get("/api/v1/processes").status, 200);
}
