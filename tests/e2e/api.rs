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
struct ApiDaemon {
    unit: String,
    socket: PathBuf,
    url: String,
}

impl ApiDaemon {
    fn start(env: &Env) -> ApiDaemon {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let unit = format!("rpapi-{}-{n}.service", std::process::id());
        let dir = env.work_dir().join("run");
        std::fs::create_dir(&dir).unwrap();
        let socket = dir.join("api.sock");
        let mut cmd = Command::new("systemd-run");
        cmd.args(["--user", "--quiet", "--unit", &unit, "-p", "Type=notify"])
            .arg(format!("--setenv=REFINE_PROC_POLICY={}", env.policy_path().display()))
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
            panic!("the daemon did not start: {}{}\n{}", out.stdout, out.stderr, log.stdout);
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
        assert_eq!(r.header("content-type").as_deref(), Some("application/problem+json"));
        let p = r.json();
        assert_eq!(p["status"], r.status, "{}", r.body);
        assert!(p["detail"].is_string() && p["type"].is_string(), "{}", r.body);
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
    assert_eq!(run.header("location"), Some(format!("/api/v1/processes/{id}")));
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
        let r = d.send("POST", &format!("/api/v1/processes/{id}/{action}"), None, &[]);
        check("post", "/api/v1/processes/{id}/{action}", &r);
        assert_eq!(r.status, 200, "{action}: {}", r.body);
        r.json()
    };
    assert_eq!(act("pause")[0]["state"], "paused");
    assert_eq!(show(rec["unit"].as_str().unwrap(), "FreezerState"), "frozen");
    assert_eq!(act("resume")[0]["state"], "running");
    let limits = d.post(&format!("/api/v1/processes/{id}/limits"), json!({"memory_max": "512M"}));
    check("post", "/api/v1/processes/{id}/limits", &limits);
    assert_eq!(limits.status, 200, "{}", limits.body);
    assert_eq!(show(rec["unit"].as_str().unwrap(), "MemoryMax"), (512u64 << 20).to_string());
    let no_limit = d.post(&format!("/api/v1/processes/{id}/limits"), json!({}));
    check("post", "/api/v1/processes/{id}/limits", &no_limit);
    assert_eq!(no_limit.status, 422);
    assert!(no_limit.json()["hint"].is_string());
    let kill = d.post(&format!("/api/v1/processes/{id}/kill"), json!({"signal": "CONT"}));
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
    let two = d.post("/api/v1/groups/pause", json!({"workflow": "w", "all": true}));
    check("post", "/api/v1/groups/{action}", &two);
    assert_eq!(two.status, 422);
    assert_eq!(act("restart")[0]["id"], id.as_str());
    assert_eq!(act("stop")[0]["state"], "stopped");
    let forget = d.send("DELETE", &format!("/api/v1/processes/{id}"), None, &[]);
    check("delete", "/api/v1/processes/{id}", &forget);
    assert_eq!(forget.status, 200, "{}", forget.body);
    assert_eq!(env.cmd(&["status", &id]).code, 3);

    // Bad input: nothing starts, with the core's hint.
    let typo = d.post("/api/v1/processes", json!({"command": ["no-such-command-x"], "cwd": work}));
    check("post", "/api/v1/processes", &typo);
    assert_eq!(typo.status, 422);
    assert_eq!(typo.json()["exit_code"], 2);
    let unknown = d.post("/api/v1/processes", json!({"command": ["sleep", "1"], "colour": 1}));
    check("post", "/api/v1/processes", &unknown);
    assert_eq!(unknown.status, 422);
    let syntax = d.send("POST", "/api/v1/processes", None, &["Content-Type: application/json"]);
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
    let messages: Vec<&str> = page["entries"].as_array().unwrap().iter().map(|e| e["message"].as_str().unwrap()).collect();
    assert_eq!(messages, ["line-2", "line-3"]);
    let cursor = page["entries"][0]["cursor"].as_str().unwrap();
    let after = d.get(&format!("/api/v1/processes/{talker}/logs?after={}", urlencode(cursor)));
    assert_eq!(after.json()["entries"].as_array().unwrap().len(), 1, "{}", after.body);
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
    assert!(system["doctor"]["checks"].as_array().unwrap().iter().any(|c| c["name"] == "user-bus"));
    assert_eq!(system["owners"].as_array().unwrap().len(), 7);
    assert!(system["pauses"]["active"].is_array());
    let policy = d.get("/api/v1/policy");
    check("get", "/api/v1/policy", &policy);
    let cli_policy: Value = env.ok(&["policy", "show", "--json"]).json();
    assert_eq!(policy.json(), cli_policy);
    let verdict = d.post("/api/v1/policy/check", json!({"as": "agent", "command": ["sleep", "1"]}));
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
