// The refine-proc daemon under test: a transient Type=notify user service
// (as tests/e2e/daemon.rs starts it) with its own index and policy,
// listening on a free loopback port.
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { execFileSync, spawnSync } from "node:child_process";

const BIN = process.env.REFINE_PROC_BIN;

async function freePort() {
  const srv = net.createServer();
  await new Promise((r) => srv.listen(0, "127.0.0.1", r));
  const { port } = srv.address();
  await new Promise((r) => srv.close(r));
  return port;
}

/** POST /api/v1/web/code on the daemon's Unix socket: a one-time code. */
function webCode(socketPath) {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, method: "POST", path: "/api/v1/web/code", headers: { host: "localhost" } }, (res) => {
      let body = "";
      res.on("data", (d) => (body += d));
      res.on("end", () => {
        if (res.statusCode !== 200) return reject(new Error(`web code: ${res.statusCode} ${body}`));
        resolve(JSON.parse(body).url);
      });
    });
    req.on("error", reject);
    req.end();
  });
}

export async function startDaemon() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "refine-web-state-"));
  const state = path.join(dir, "state");
  const policy = path.join(dir, "policy.toml");
  const port = await freePort();
  const unit = `rpweb-${process.pid}.service`;
  const env = { ...process.env, REFINE_PROC_POLICY: policy };
  const cli = (...args) => execFileSync(BIN, ["--state-dir", state, ...args], { encoding: "utf8", env, cwd: dir });
  const cliAllowFail = (...args) => spawnSync(BIN, ["--state-dir", state, ...args], { encoding: "utf8", env, cwd: dir }).stdout;
  // systemd-run returns once the daemon said READY=1, so it is listening.
  execFileSync("systemd-run", [
    "--user", "--quiet", "--unit", unit, "-p", "Type=notify", "-p", "WatchdogSec=10s",
    `--setenv=REFINE_PROC_POLICY=${policy}`,
    BIN, "--state-dir", state, "daemon", "--listen", `127.0.0.1:${port}`,
  ], { stdio: "inherit" });
  const base = `http://127.0.0.1:${port}/`;
  const socket = path.join(process.env.XDG_RUNTIME_DIR, "refine-proc", "api.sock");
  return {
    port, state, unit, cli, cliAllowFail,
    url: (hash) => base + (hash || ""),
    /** A fresh one-time sign-in URL: what `refine-proc web` asks the
     * daemon for on its Unix socket (POST /api/v1/web/code). */
    signInUrl: () => webCode(socket),
    stop() {
      spawnSync("systemctl", ["--user", "stop", unit]);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
