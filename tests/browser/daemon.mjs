// The refine-proc daemon under test: a transient Type=notify user service
// (as tests/e2e/daemon.rs starts it) with its own index, policy and API
// socket, listening on a loopback port the kernel picks.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { execFileSync, spawnSync } from "node:child_process";

const BIN = process.env.REFINE_PROC_BIN;

export async function startDaemon() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "refine-web-state-"));
  const state = path.join(dir, "state");
  const policy = path.join(dir, "policy.toml");
  const socket = path.join(dir, "api.sock");
  const unit = `rpweb-${process.pid}.service`;
  const env = { ...process.env, REFINE_PROC_POLICY: policy };
  const cli = (...args) => execFileSync(BIN, ["--state-dir", state, ...args], { encoding: "utf8", env, cwd: dir });
  const cliAllowFail = (...args) => spawnSync(BIN, ["--state-dir", state, ...args], { encoding: "utf8", env, cwd: dir }).stdout;
  // systemd-run returns once the daemon said READY=1, so it is listening.
  execFileSync("systemd-run", [
    "--user", "--quiet", "--unit", unit, "-p", "Type=notify", "-p", "WatchdogSec=10s",
    `--setenv=REFINE_PROC_POLICY=${policy}`,
    BIN, "--state-dir", state, "daemon", "--socket", socket, "--listen", "127.0.0.1:0",
  ], { stdio: "inherit" });
  /** A fresh one-time sign-in URL, as `refine-proc web` prints it. */
  const signInUrl = () => {
    const out = cli("web", "--socket", socket);
    const m = out.match(/http:\/\/127\.0\.0\.1:\d+\/#[\w-]+/);
    if (!m) throw new Error("refine-proc web printed no URL: " + out);
    return m[0];
  };
  const base = new URL(signInUrl()).origin + "/";
  return {
    state, unit, socket, cli, cliAllowFail, signInUrl,
    url: (hash) => base + (hash || ""),
    stop() {
      spawnSync("systemctl", ["--user", "stop", unit]);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
