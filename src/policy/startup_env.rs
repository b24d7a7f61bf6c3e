//! The environment variables that change how a program starts (loader,
//! interpreter paths) and the patterns that name them.

/// Variables that make the loader or an interpreter run code before (or
/// instead of) the program the policy allowed: glibc's loader (`LD_*`,
/// `GLIBC_TUNABLES`, `GCONV_PATH`), shells, Python, Node, Perl, Ruby,
/// Java, Lua, Tcl, PHP, OpenSSL, git. Globs end in `*`.
pub const STARTUP_ENV: &[&str] = &[
    "LD_*",
    "GLIBC_TUNABLES",
    "GCONV_PATH",
    "NLSPATH",
    "LOCPATH",
    "HOSTALIASES",
    "BASH_ENV",
    "ENV",
    "BASH_FUNC_*",
    "SHELLOPTS",
    "BASHOPTS",
    "PS4",
    "PROMPT_COMMAND",
    "ZDOTDIR",
    "PYTHONSTARTUP",
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONUSERBASE",
    "PYTHONWARNINGS",
    "PYTHONBREAKPOINT",
    "PYTHONINSPECT",
    "NODE_OPTIONS",
    "NODE_PATH",
    "NODE_REPL_EXTERNAL_MODULE",
    "PERL5OPT",
    "PERL5LIB",
    "PERLLIB",
    "PERL5DB",
    "RUBYOPT",
    "RUBYLIB",
    "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS",
    "JDK_JAVA_OPTIONS",
    "CLASSPATH",
    "LUA_INIT*",
    "LUA_PATH*",
    "LUA_CPATH*",
    "TCLLIBPATH",
    "PHPRC",
    "PHP_INI_SCAN_DIR",
    "OPENSSL_CONF",
    "OPENSSL_ENGINES",
    "GIT_SSH",
    "GIT_SSH_COMMAND",
    "GIT_EXEC_PATH",
    "GIT_CONFIG*",
    "GIT_ASKPASS",
    "GIT_EDITOR",
    "GIT_PAGER",
    "GIT_EXTERNAL_DIFF",
    "GIT_PROXY_COMMAND",
    "GIT_TEMPLATE_DIR",
    "SSH_ASKPASS",
    "LESSOPEN",
    "LESSCLOSE",
];

/// Whether `name` matches an `env` pattern: a name, or a glob where `*`
/// and `?` match within the name.
pub(super) fn env_matches(pattern: &str, name: &str) -> bool {
    glob::Pattern::new(pattern).is_ok_and(|p| p.matches(name))
}

/// The start-up variable pattern `name` matches, if any.
pub fn startup_variable(name: &str) -> Option<&'static str> {
    STARTUP_ENV.iter().copied().find(|p| env_matches(p, name))
}
