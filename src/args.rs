//! Hand-written command-line parsing for the `igpt` command (and any tool built on igpt):
//! flags declared up front, typed getters, one-line errors.
//!
//! A command declares its flags as a table of [`Flag`]s. [`parse`] walks the arguments once:
//! `--name value`, `--name=value`, boolean `--name`, and multi-valued flags that take every
//! following argument up to the next `--flag` (`--images a.png b.png`). Anything else is an
//! error that names the command and the offending argument. `--help` / `-h` returns the
//! generated help text instead.
//!
//! Every usage error is a [`Stop::Usage`], whatever finds it: the parser (an unknown flag, a
//! missing or empty value), the typed getters (an unparsable value, a float that is NaN or
//! infinite, a value outside the flag's range) or the command itself through
//! [`Parsed::usage`] (a combination of flags that cannot go together). The `igpt` binary maps
//! exactly this kind to exit status 2, so a range check cannot end up as a failed-work error.

use std::fmt::{Display, Write as _};
use std::str::FromStr;

/// How a flag takes values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arity {
    /// A switch: present or not.
    Switch,
    /// Exactly one value.
    One,
    /// One or more values.
    Many,
}

/// One accepted flag.
#[derive(Clone, Copy, Debug)]
pub struct Flag {
    /// Long name without dashes, e.g. `"steps"`.
    pub name: &'static str,
    pub arity: Arity,
    /// Placeholder for the value in the help text, e.g. `"N"`.
    pub value: &'static str,
    pub help: &'static str,
}

impl Flag {
    pub const fn switch(name: &'static str, help: &'static str) -> Self {
        Flag { name, arity: Arity::Switch, value: "", help }
    }
    pub const fn one(name: &'static str, value: &'static str, help: &'static str) -> Self {
        Flag { name, arity: Arity::One, value, help }
    }
    pub const fn many(name: &'static str, value: &'static str, help: &'static str) -> Self {
        Flag { name, arity: Arity::Many, value, help }
    }
}

/// A (sub)command's interface: its name as typed, a one-line summary, positional arguments and
/// flags.
pub struct Command {
    /// The full name, e.g. `"igpt bench"`.
    pub name: &'static str,
    pub about: &'static str,
    /// Positional arguments, e.g. `&["WHAT"]`; each is required.
    pub positionals: &'static [(&'static str, &'static str)],
    pub flags: &'static [Flag],
}

/// Why parsing stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum Stop {
    /// `--help` was given: print this text and exit 0.
    Help(String),
    /// A usage error: print this line and exit 2.
    Usage(String),
}

/// The parsed arguments of one command.
#[derive(Debug)]
pub struct Parsed {
    command: &'static str,
    positionals: Vec<String>,
    values: Vec<(&'static str, Vec<String>)>,
}

/// The help text of `cmd`.
pub fn help(cmd: &Command) -> String {
    let mut s = format!("{}\n\nUsage: {}", cmd.about, cmd.name);
    for (p, _) in cmd.positionals {
        let _ = write!(s, " {p}");
    }
    s.push_str(" [FLAGS]\n");
    if !cmd.positionals.is_empty() {
        s.push_str("\nArguments:\n");
        for (p, h) in cmd.positionals {
            let _ = writeln!(s, "  {p:<24} {h}");
        }
    }
    s.push_str("\nFlags:\n");
    for f in cmd.flags {
        let left = match f.arity {
            Arity::Switch => format!("--{}", f.name),
            Arity::One => format!("--{} {}", f.name, f.value),
            Arity::Many => format!("--{} {}...", f.name, f.value),
        };
        let _ = writeln!(s, "  {left:<24} {}", f.help);
    }
    let _ = writeln!(s, "  {:<24} print this help", "-h, --help");
    s
}

/// Parses `args` (the arguments after the command name) against `cmd`.
pub fn parse(cmd: &Command, args: &[String]) -> Result<Parsed, Stop> {
    let usage =
        |msg: String| Stop::Usage(format!("{}: {msg} (see '{} --help')", cmd.name, cmd.name));
    let mut parsed = Parsed { command: cmd.name, positionals: Vec::new(), values: Vec::new() };
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--help" || arg == "-h" {
            return Err(Stop::Help(help(cmd)));
        }
        let Some(body) = arg.strip_prefix("--") else {
            if arg.starts_with('-') && arg.len() > 1 && arg.parse::<f64>().is_err() {
                return Err(usage(format!("unknown flag '{arg}'")));
            }
            if parsed.positionals.len() == cmd.positionals.len() {
                return Err(usage(format!("unexpected argument '{arg}'")));
            }
            parsed.positionals.push(arg.clone());
            continue;
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        let Some(flag) = cmd.flags.iter().find(|f| f.name == name) else {
            return Err(usage(format!("unknown flag '--{name}'")));
        };
        if parsed.values.iter().any(|(n, _)| *n == flag.name) {
            return Err(usage(format!("--{name} given twice")));
        }
        let mut vals = Vec::new();
        match (flag.arity, inline) {
            (Arity::Switch, Some(_)) => return Err(usage(format!("--{name} takes no value"))),
            (Arity::Switch, None) => {}
            (_, Some(v)) => vals.push(v),
            (Arity::One, None) => match args.get(i) {
                Some(v) if !v.starts_with("--") => {
                    vals.push(v.clone());
                    i += 1;
                }
                _ => return Err(usage(format!("--{name} needs a value ({})", flag.value))),
            },
            (Arity::Many, None) => {
                while i < args.len() && !args[i].starts_with("--") {
                    vals.push(args[i].clone());
                    i += 1;
                }
                if vals.is_empty() {
                    return Err(usage(format!(
                        "--{name} needs at least one value ({})",
                        flag.value
                    )));
                }
            }
        }
        if vals.iter().any(String::is_empty) {
            return Err(usage(format!("--{name} has an empty value")));
        }
        parsed.values.push((flag.name, vals));
    }
    if parsed.positionals.len() < cmd.positionals.len() {
        let missing = cmd.positionals[parsed.positionals.len()].0;
        return Err(usage(format!("missing argument {missing}")));
    }
    Ok(parsed)
}

/// A type a flag's value parses to. A float must also be finite: no flag of igpt means anything
/// at NaN or ±∞, which Rust's float parser accepts.
pub trait FlagValue: FromStr + Display + Copy + PartialOrd + Default {
    /// Whether a parsed value is admissible at all (before the flag's own range).
    fn admissible(&self) -> bool {
        true
    }
}

impl FlagValue for usize {}
impl FlagValue for u64 {}
impl FlagValue for u32 {}
impl FlagValue for f64 {
    fn admissible(&self) -> bool {
        self.is_finite()
    }
}
impl FlagValue for f32 {
    fn admissible(&self) -> bool {
        self.is_finite()
    }
}

impl Parsed {
    /// A usage error of this command: `igpt CMD: msg (see 'igpt CMD --help')`. Commands use it
    /// for checks the getters cannot make (combinations, a value against the data it applies to).
    pub fn usage(&self, msg: impl Display) -> Stop {
        Stop::Usage(format!("{}: {msg} (see '{} --help')", self.command, self.command))
    }

    fn raw(&self, name: &str) -> Option<&[String]> {
        self.values.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_slice())
    }

    /// Positional argument `i`.
    pub fn positional(&self, i: usize) -> &str {
        &self.positionals[i]
    }

    /// Whether the switch `--name` was given (for a flag with a value: whether it was given).
    pub fn switch(&self, name: &str) -> bool {
        self.raw(name).is_some()
    }

    /// The value of `--name`, if given.
    pub fn str(&self, name: &str) -> Option<&str> {
        self.raw(name).map(|v| v[0].as_str())
    }

    /// The value of `--name`, which must be given.
    pub fn required(&self, name: &str) -> Result<&str, Stop> {
        self.str(name).ok_or_else(|| self.usage(format!("--{name} is required")))
    }

    /// All values of a multi-valued `--name` (empty if not given).
    pub fn many(&self, name: &str) -> &[String] {
        self.raw(name).unwrap_or(&[])
    }

    /// `--name` parsed as `T` (integers, finite floats), or `default` when absent.
    pub fn parse_or<T: FlagValue>(&self, name: &str, default: T) -> Result<T, Stop> {
        Ok(self.parse_opt(name)?.unwrap_or(default))
    }

    /// `--name` parsed as `T` (integers, finite floats), if given.
    pub fn parse_opt<T: FlagValue>(&self, name: &str) -> Result<Option<T>, Stop> {
        let Some(v) = self.str(name) else { return Ok(None) };
        match v.parse::<T>() {
            Ok(x) if x.admissible() => Ok(Some(x)),
            Ok(x) => Err(self.usage(format!("--{name} must be a finite number, got {x}"))),
            Err(_) => {
                let kind = std::any::type_name::<T>();
                Err(self.usage(format!("--{name}: cannot parse '{v}' as {kind}")))
            }
        }
    }

    /// `--name`, if given, which must satisfy `ok`; `rule` completes "--name must …" otherwise.
    pub fn parse_where<T: FlagValue>(
        &self,
        name: &str,
        ok: impl Fn(T) -> bool,
        rule: &str,
    ) -> Result<Option<T>, Stop> {
        match self.parse_opt(name)? {
            Some(x) if !ok(x) => Err(self.usage(format!("--{name} must {rule}, got {x}"))),
            x => Ok(x),
        }
    }

    /// `--name`, if given, which must be positive (at least 1 for a count).
    pub fn positive_opt<T: FlagValue>(&self, name: &str) -> Result<Option<T>, Stop> {
        self.parse_where(name, |x| x > T::default(), "be positive")
    }

    /// `--name` (positive), or `default` when absent.
    pub fn positive<T: FlagValue>(&self, name: &str, default: T) -> Result<T, Stop> {
        Ok(self.positive_opt(name)?.unwrap_or(default))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLAGS: &[Flag] = &[
        Flag::one("steps", "N", "number of steps"),
        Flag::one("lr", "X", "learning rate"),
        Flag::switch("resume", "resume"),
        Flag::many("images", "FILE", "images"),
    ];
    const CMD: Command =
        Command { name: "igpt test", about: "a test", positionals: &[], flags: FLAGS };

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn usage_of(s: &str) -> String {
        match parse(&CMD, &args(s)) {
            Err(Stop::Usage(m)) => m,
            other => panic!("expected a usage error for '{s}', got {other:?}"),
        }
    }

    #[test]
    fn parses_values_switches_and_lists() {
        let p = parse(&CMD, &args("--steps 10 --lr=3e-4 --resume --images a.png b.png")).unwrap();
        assert_eq!(p.parse_or("steps", 0usize).unwrap(), 10);
        assert_eq!(p.parse_opt::<f64>("lr").unwrap(), Some(3e-4));
        assert!(p.switch("resume"));
        assert_eq!(p.many("images"), ["a.png", "b.png"]);
        assert_eq!(p.parse_or("missing", 7u32).unwrap(), 7);
    }

    #[test]
    fn bad_input_gives_one_line_errors() {
        assert!(usage_of("--bogus").contains("unknown flag '--bogus'"));
        assert!(usage_of("--steps").contains("--steps needs a value"));
        assert!(usage_of("--steps --resume").contains("--steps needs a value"));
        assert!(usage_of("--resume=1").contains("takes no value"));
        assert!(usage_of("--images").contains("at least one value"));
        assert!(usage_of("--steps 1 --steps 2").contains("given twice"));
        assert!(usage_of("stray").contains("unexpected argument"));
        assert!(usage_of("-x").contains("unknown flag '-x'"));
        let p = parse(&CMD, &args("--steps ten")).unwrap();
        let Err(Stop::Usage(m)) = p.parse_or("steps", 0usize) else { panic!() };
        assert!(m.contains("cannot parse 'ten'") && !m.contains('\n'), "{m}");
        let p = parse(&CMD, &args("--steps -3")).unwrap();
        assert!(p.parse_or("steps", 0usize).is_err());
        assert!(usage_of("--lr=").contains("--lr has an empty value"));
    }

    #[test]
    fn degenerate_values_are_usage_errors() {
        let usage =
            |s: &str, get: &dyn Fn(&Parsed) -> Result<(), Stop>| match get(
                &parse(&CMD, &args(s)).unwrap()
            ) {
                Err(Stop::Usage(m)) => m,
                other => panic!("expected a usage error for '{s}', got {other:?}"),
            };
        for lr in ["nan", "inf", "-inf", "NaN"] {
            let m = usage(&format!("--lr {lr}"), &|p| p.parse_opt::<f64>("lr").map(drop));
            assert!(m.contains("--lr must be a finite number"), "{m}");
        }
        let m = usage("--steps 0", &|p| p.positive("steps", 5usize).map(drop));
        assert!(m.contains("--steps must be positive, got 0"), "{m}");
        let m = usage("--lr -1", &|p| p.positive("lr", 1.0f64).map(drop));
        assert!(m.contains("--lr must be positive, got -1"), "{m}");
        let m =
            usage("--lr 2", &|p| p.parse_where("lr", |x: f64| x <= 1.0, "be at most 1").map(drop));
        assert!(m.contains("--lr must be at most 1, got 2"), "{m}");
        let p = parse(&CMD, &args("--steps 3")).unwrap();
        assert_eq!(p.positive("steps", 5usize).unwrap(), 3);
        assert_eq!(p.positive("lr", 0.5f64).unwrap(), 0.5);
    }

    #[test]
    fn help_lists_every_flag() {
        let Err(Stop::Help(h)) = parse(&CMD, &args("--help")) else { panic!() };
        for f in FLAGS {
            assert!(h.contains(&format!("--{}", f.name)));
        }
    }
}
