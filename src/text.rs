//! Parsing of human input (sizes, durations, signals) and escaping of
//! untrusted text for terminals.

use std::time::Duration;

use crate::error::{Error, Result};

/// Escapes control characters (newlines, ESC, DEL, ...) so that untrusted
/// text cannot move the cursor or forge lines; everything else is kept.
pub fn escape(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Shortens escaped text to at most `max` characters, marking the cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Parses a size in bytes: `512`, `512K`, `1.5G`, `2GiB` (1024-based, as
/// systemd does).
pub fn parse_size(s: &str) -> Result<u64> {
    let bad = || {
        Error::invalid(format!("invalid size {:?}", escape(s)))
            .hint("use bytes or a number with K, M, G or T (1024-based), e.g. 512M or 2G")
    };
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let factor: u64 = match unit.trim().trim_end_matches("iB").trim_end_matches('B') {
        "" => 1,
        "K" | "k" => 1 << 10,
        "M" | "m" => 1 << 20,
        "G" | "g" => 1 << 30,
        "T" | "t" => 1 << 40,
        _ => return Err(bad()),
    };
    let value: f64 = num.parse().map_err(|_| bad())?;
    let bytes = value * factor as f64;
    if !bytes.is_finite() || bytes < 1.0 || bytes >= u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

/// Parses a duration: `90` (seconds), `90s`, `5min`, `1h 30m`, `2d`.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let t = s.trim();
    let parsed = match t.parse::<u64>() {
        Ok(secs) => Ok(Duration::from_secs(secs)),
        Err(_) => humantime::parse_duration(t),
    };
    match parsed {
        Ok(d) if !d.is_zero() => Ok(d),
        _ => Err(Error::invalid(format!("invalid duration {:?}", escape(s)))
            .hint("use seconds or a duration such as 30s, 5min, 1h 30m or 2d")),
    }
}

/// Parses a duration into whole seconds, at least 1 (systemd's
/// `RuntimeMaxSec=` granularity as refine-proc records it).
pub fn parse_seconds(s: &str) -> Result<u64> {
    parse_duration(s).map(|d| d.as_secs().max(1))
}

/// Parses a CPU quota in percent of one CPU: `50`, `150%`.
pub fn parse_cpu_quota(s: &str) -> Result<u64> {
    match s.trim().trim_end_matches('%').parse::<u64>() {
        Ok(p) if (1..=crate::model::MAX_CPU_QUOTA_PERCENT).contains(&p) => Ok(p),
        _ => Err(Error::invalid(format!("invalid CPU quota {:?}", escape(s)))
            .hint("use a percentage of one CPU, e.g. 50% or 200% for two CPUs")),
    }
}

/// Parses a CPU weight (`CPUWeight=`): 1 to 10000, systemd's default is 100.
pub fn parse_cpu_weight(s: &str) -> Result<u64> {
    match s.trim().parse::<u64>() {
        Ok(w) if crate::model::CPU_WEIGHT_RANGE.contains(&w) => Ok(w),
        _ => Err(
            Error::invalid(format!("invalid CPU weight {:?}", escape(s)))
                .hint("use a number from 1 to 10000 (systemd's default is 100)"),
        ),
    }
}

/// Parses a number of tasks (`TasksMax=`): at least 1.
pub fn parse_tasks(s: &str) -> Result<u64> {
    match s.trim().parse::<u64>() {
        Ok(n) if (1..u64::MAX).contains(&n) => Ok(n),
        _ => Err(
            Error::invalid(format!("invalid number of tasks {:?}", escape(s)))
                .hint("use a whole number of at least 1, e.g. 64"),
        ),
    }
}

/// Parses a limit for `set`: `infinity` (no limit) or what `parse` takes.
pub fn parse_limit(
    s: &str,
    parse: impl Fn(&str) -> Result<u64>,
) -> Result<crate::model::LimitValue> {
    if s.trim().eq_ignore_ascii_case("infinity") {
        return Ok(crate::model::LimitValue::Infinity);
    }
    parse(s)
        .map(crate::model::LimitValue::Value)
        .map_err(|e| match e.hint.clone() {
            Some(h) => e.hint(format!("{h}; or infinity for no limit")),
            None => e.hint("or infinity for no limit"),
        })
}

/// A size as people write a limit: exact when it is a whole number of a
/// unit (512M, 16G, 1536M), else rounded as [`human_size`] does.
pub fn limit_size(bytes: u64) -> String {
    for (shift, unit) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    human_size(bytes)
}

/// A size for people: 512B, 1.5K, 12.3M, 2.0G (1024-based, as systemd).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["K", "M", "G", "T", "P"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if value < 10.0 {
        format!("{value:.1}{}", UNITS[unit])
    } else {
        format!("{value:.0}{}", UNITS[unit])
    }
}

/// Linux signal names (without SIG), as systemd prints them in EXIT_STATUS.
const SIGNALS: [(&str, i32); 31] = [
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("STKFLT", libc::SIGSTKFLT),
    ("CHLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("PWR", libc::SIGPWR),
    ("SYS", libc::SIGSYS),
];

/// Parses a signal given as a name (`TERM`, `SIGTERM`, `term`,
/// `RTMIN+3`) or a number.
/// The name systemd gives signal `n` (without SIG), or its number.
pub fn signal_name(n: i32) -> String {
    SIGNALS
        .iter()
        .find(|(_, v)| *v == n)
        .map(|(name, _)| name.to_string())
        .unwrap_or_else(|| n.to_string())
}

pub fn parse_signal(s: &str) -> Result<i32> {
    let upper = s.trim().to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let max = libc::SIGRTMAX();
    let number = if let Ok(n) = name.parse::<i32>() {
        Some(n)
    } else if let Some(offset) = name.strip_prefix("RTMIN+") {
        offset.parse::<i32>().ok().map(|o| libc::SIGRTMIN() + o)
    } else if name == "RTMIN" {
        Some(libc::SIGRTMIN())
    } else {
        SIGNALS.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    };
    number.filter(|n| (1..=max).contains(n)).ok_or_else(|| {
        Error::invalid(format!("unknown signal {:?}", escape(s))).hint(format!(
            "use a name such as TERM, KILL, INT, HUP, USR1, RTMIN+1, or a number from 1 to {max}"
        ))
    })
}

/// Splits `KEY=VALUE`; the key must be non-empty.
pub fn split_assignment<'a>(s: &'a str, flag: &str) -> Result<(&'a str, &'a str)> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k, v)),
        _ => Err(
            Error::invalid(format!("{flag} needs KEY=VALUE, got {:?}", escape(s)))
                .hint(format!("write it as {flag} NAME=value")),
        ),
    }
}

/// A short age for tables: 42s, 5m, 3h, 2d.
pub fn short_age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86_399 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_keeps_text_and_neutralises_controls() {
        assert_eq!(escape("plain $HOME 'x'"), "plain $HOME 'x'");
        assert_eq!(escape("a\nb\x1b[31m\t"), "a\\nb\\u{1b}[31m\\t");
    }

    #[test]
    fn sizes_are_1024_based_and_errors_name_the_fix() {
        assert_eq!(parse_size("512").unwrap(), 512);
        assert_eq!(parse_size("1K").unwrap(), 1024);
        assert_eq!(parse_size("1.5G").unwrap(), 3 << 29);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        for bad in ["", "G", "-1M", "1X", "0", "1e400"] {
            let e = parse_size(bad).unwrap_err();
            assert!(e.hint.unwrap().contains("512M"), "{bad}");
        }
    }

    #[test]
    fn durations_accept_seconds_and_units() {
        assert_eq!(parse_duration("90").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("1h 30m").unwrap().as_secs(), 5400);
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("0").is_err());
    }

    #[test]
    fn signals_by_name_or_number() {
        assert_eq!(parse_signal("SIGKILL").unwrap(), 9);
        assert_eq!(parse_signal("term").unwrap(), 15);
        assert_eq!(parse_signal("10").unwrap(), 10);
        assert_eq!(parse_signal("SEGV").unwrap(), 11);
        assert_eq!(parse_signal("RTMIN+1").unwrap(), libc::SIGRTMIN() + 1);
        assert!(parse_signal("BOGUS").is_err());
        assert!(parse_signal("RTMIN+99").is_err());
        assert!(parse_signal("0").is_err());
    }

    #[test]
    fn limit_sizes_are_exact_when_they_can_be() {
        assert_eq!(limit_size(512 << 20), "512M");
        assert_eq!(limit_size(16 << 30), "16G");
        assert_eq!(limit_size(1536 << 20), "1536M");
        assert_eq!(limit_size(1000), "1000B");
        assert_eq!(limit_size((1 << 30) + 1), "1.0G");
    }

    #[test]
    fn limits_for_set_take_infinity() {
        use crate::model::LimitValue;
        assert_eq!(
            parse_limit("infinity", parse_size).unwrap(),
            LimitValue::Infinity
        );
        assert_eq!(
            parse_limit("1G", parse_size).unwrap(),
            LimitValue::Value(1 << 30)
        );
        let e = parse_limit("lots", parse_size).unwrap_err();
        assert!(e.hint.unwrap().ends_with("or infinity for no limit"));
        assert_eq!(parse_cpu_weight("100").unwrap(), 100);
        for bad in ["0", "10001", "-1", "x"] {
            assert!(parse_cpu_weight(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_tasks("64").unwrap(), 64);
        assert!(parse_tasks("0").is_err());
    }

    #[test]
    fn human_sizes_are_short() {
        assert_eq!(human_size(512), "512B");
        assert_eq!(human_size(1536), "1.5K");
        assert_eq!(human_size(64 << 20), "64M");
        assert_eq!(human_size(3 << 29), "1.5G");
    }

    #[test]
    fn cpu_quota_in_percent() {
        assert_eq!(parse_cpu_quota("150%").unwrap(), 150);
        assert!(parse_cpu_quota("0").is_err());
        assert!(parse_cpu_quota("abc").is_err());
    }
}
