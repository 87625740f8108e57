//! `reflect --filter RULE`: a small path language over a message's JSON,
//! parsed once at start.
//!
//! ```text
//! RULE    = PATH                  keep only this part of the message
//!         | PATH == VALUE         keep the messages where it equals VALUE
//!         | PATH != VALUE         keep the messages where it does not
//! PATH    = "." STEP*   (just "." is the whole message)
//! STEP    = NAME | "." NAME | "." "quoted name" | [INDEX] | ["quoted name"]
//! VALUE   = any JSON value: "alert", 3, true, null, ["a"]
//! ```
//!
//! A path that leads nowhere reads as `null` in a comparison (so
//! `.kind != "alert"` keeps messages without `kind`), and drops the message
//! when it is the whole rule. Several rules apply in the order given.

use serde_json::Value;

/// One step down a message.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// An object's member.
    Key(String),
    /// An array's item.
    Index(usize),
}

/// Where in a message a rule looks.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Path(Vec<Step>);

impl Path {
    fn find<'a>(&self, mut value: &'a Value) -> Option<&'a Value> {
        for step in &self.0 {
            value = match step {
                Step::Key(key) => value.as_object()?.get(key)?,
                Step::Index(index) => value.as_array()?.get(*index)?,
            };
        }
        Some(value)
    }

    fn take(&self, mut value: Value) -> Option<Value> {
        for step in &self.0 {
            value = match (step, value) {
                (Step::Key(key), Value::Object(mut object)) => object.remove(key)?,
                (Step::Index(index), Value::Array(mut array)) if *index < array.len() => {
                    array.swap_remove(*index)
                }
                _ => return None,
            };
        }
        Some(value)
    }
}

/// One `--filter` rule.
#[derive(Debug, Clone, PartialEq)]
enum Rule {
    /// `PATH == VALUE` (`equal`) or `PATH != VALUE`.
    Compare {
        path: Path,
        equal: bool,
        value: Value,
    },
    /// `PATH`: the message becomes this part of it.
    Take(Path),
}

/// Every `--filter` rule, in order.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Filter(Vec<Rule>);

impl Filter {
    /// Parses each rule; the error names the rule and what is wrong.
    pub(crate) fn parse<S: AsRef<str>>(rules: &[S]) -> Result<Filter, String> {
        rules
            .iter()
            .map(|rule| {
                parse_rule(rule.as_ref())
                    .map_err(|why| format!("--filter {:?}: {why}", rule.as_ref()))
            })
            .collect::<Result<_, _>>()
            .map(Filter)
    }

    /// Whether there are no rules (messages pass as sent, unparsed).
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// What is left of `message` after every rule: `None` drops it.
    pub(crate) fn apply(&self, mut message: Value) -> Option<Value> {
        for rule in &self.0 {
            message = match rule {
                Rule::Compare { path, equal, value } => {
                    let found = path.find(&message).unwrap_or(&Value::Null);
                    if (found == value) != *equal {
                        return None;
                    }
                    message
                }
                Rule::Take(path) => path.take(message)?,
            };
        }
        Some(message)
    }
}

fn parse_rule(rule: &str) -> Result<Rule, String> {
    let rule = rule.trim();
    let (path, rest) = parse_path(rule)?;
    let rest = rest.trim_start();
    if rest.is_empty() {
        return Ok(Rule::Take(path));
    }
    let (equal, literal) = if let Some(literal) = rest.strip_prefix("==") {
        (true, literal)
    } else if let Some(literal) = rest.strip_prefix("!=") {
        (false, literal)
    } else {
        return Err(format!(
            "expected == or != after the path, found {:?}",
            rest.chars().take(20).collect::<String>()
        ));
    };
    let value = serde_json::from_str(literal.trim()).map_err(|error| {
        format!(
            "the value after {} must be JSON ({error}); write text in double quotes, as \"alert\"",
            if equal { "==" } else { "!=" }
        )
    })?;
    Ok(Rule::Compare { path, equal, value })
}

/// Reads a path off the front of `text`; returns it and what follows.
fn parse_path(text: &str) -> Result<(Path, &str), String> {
    let mut rest = text
        .strip_prefix('.')
        .ok_or("a rule starts with a path such as .kind or . (the whole message)")?;
    let mut steps = Vec::new();
    // Right after a dot a name may follow (`.kind`); after the leading dot
    // it may also be nothing (`.`, `.[0]`).
    let mut name_allowed = true;
    let mut leading = true;
    loop {
        if name_allowed {
            if let Some(quoted) = rest.strip_prefix('"') {
                let (key, after) = quoted_name(quoted)?;
                steps.push(Step::Key(key));
                rest = after;
                name_allowed = false;
                continue;
            }
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || matches!(c, '_' | '-' | '@' | '#' | '$')))
                .unwrap_or(rest.len());
            if end > 0 {
                steps.push(Step::Key(rest[..end].to_string()));
                rest = &rest[end..];
                name_allowed = false;
                continue;
            }
            if !leading {
                return Err("a . in a path must be followed by a name".into());
            }
        }
        if let Some(after) = rest.strip_prefix('.') {
            rest = after;
            name_allowed = true;
            leading = false;
            continue;
        }
        if let Some(inside) = rest.strip_prefix('[') {
            if let Some(quoted) = inside.strip_prefix('"') {
                let (key, after) = quoted_name(quoted)?;
                steps.push(Step::Key(key));
                rest = after
                    .strip_prefix(']')
                    .ok_or("expected ] after the quoted name")?;
            } else {
                let end = inside.find(']').ok_or("expected ] after the index")?;
                let index = inside[..end].trim().parse::<usize>().map_err(|_| {
                    format!(
                        "[{}] is not an array index: use [0], [1] … or [\"name\"]",
                        &inside[..end]
                    )
                })?;
                steps.push(Step::Index(index));
                rest = &inside[end + 1..];
            }
            name_allowed = false;
            continue;
        }
        return Ok((Path(steps), rest));
    }
}

/// A JSON string's contents up to its closing quote (the opening one is
/// already read), decoded; and what follows it.
fn quoted_name(text: &str) -> Result<(String, &str), String> {
    let mut escaped = false;
    for (at, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => {
                let key = serde_json::from_str::<String>(&format!("\"{}\"", &text[..at]))
                    .map_err(|error| format!("bad quoted name: {error}"))?;
                return Ok((key, &text[at + 1..]));
            }
            _ => {}
        }
    }
    Err("a quoted name needs its closing \"".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn filter(rules: &[&str]) -> Filter {
        Filter::parse(rules).unwrap()
    }

    #[test]
    fn equality_keeps_only_matching_messages() {
        let alerts = filter(&[r#".kind == "alert""#]);
        assert_eq!(
            alerts.apply(json!({"kind": "alert", "n": 1})),
            Some(json!({"kind": "alert", "n": 1}))
        );
        assert_eq!(alerts.apply(json!({"kind": "info"})), None);
        assert_eq!(alerts.apply(json!({"other": 1})), None);
        assert_eq!(alerts.apply(json!("alert")), None);
        let compact = filter(&[r#".kind=="alert""#]);
        assert_eq!(compact, alerts);
    }

    #[test]
    fn inequality_keeps_the_rest_including_messages_without_the_field() {
        let rest = filter(&[r#".kind != "alert""#]);
        assert_eq!(rest.apply(json!({"kind": "alert"})), None);
        assert!(rest.apply(json!({"kind": "info"})).is_some());
        assert!(rest.apply(json!({})).is_some());
        assert!(filter(&[".kind == null"]).apply(json!({})).is_some());
    }

    #[test]
    fn a_bare_path_forwards_only_that_part() {
        let payload = filter(&[".payload"]);
        assert_eq!(
            payload.apply(json!({"payload": {"a": [1, 2]}, "meta": 0})),
            Some(json!({"a": [1, 2]}))
        );
        assert_eq!(payload.apply(json!({"meta": 0})), None);
        assert_eq!(filter(&["."]).apply(json!([1])), Some(json!([1])));
        assert_eq!(
            filter(&[".x[1]"]).apply(json!({"x": ["a", "b"]})),
            Some(json!("b"))
        );
        assert_eq!(filter(&[".x[2]"]).apply(json!({"x": ["a", "b"]})), None);
    }

    #[test]
    fn rules_apply_in_order_and_paths_go_deep() {
        let rules = filter(&[r#".meta.kind == "alert""#, ".payload"]);
        assert_eq!(
            rules.apply(json!({"meta": {"kind": "alert"}, "payload": 5})),
            Some(json!(5))
        );
        assert_eq!(
            rules.apply(json!({"meta": {"kind": "x"}, "payload": 5})),
            None
        );
        // Form posts are objects of string arrays.
        let form = filter(&[r#".x[0] == "hello!""#]);
        assert!(form.apply(json!({"x": ["hello!"]})).is_some());
        let quoted = filter(&[r#"."a b"["c.d"] == 1"#, r#".["@id"]"#]);
        assert_eq!(
            quoted.apply(json!({"a b": {"c.d": 1}, "@id": "7"})),
            Some(json!("7"))
        );
        assert_eq!(quoted.apply(json!({"a b": {"c.d": 2}, "@id": "7"})), None);
        let quoted = filter(&[r#"."a b"["c.d"] == 1"#, r#".["a b"]"#]);
        assert_eq!(
            quoted.apply(json!({"a b": {"c.d": 1}})),
            Some(json!({"c.d": 1}))
        );
        assert!(filter(&[".n == 3", ".ok != false"])
            .apply(json!({"n": 3, "ok": true}))
            .is_some());
        assert!(filter(&[r#".tags == ["a"]"#])
            .apply(json!({"tags": ["a"]}))
            .is_some());
    }

    #[test]
    fn a_bad_rule_is_refused_at_start_with_what_is_wrong() {
        let refused = |rule: &str| Filter::parse(&[rule]).unwrap_err();
        assert!(refused(r#"kind == "alert""#).contains("starts with a path"));
        assert!(refused(".kind == alert").contains("double quotes"));
        assert!(refused(".kind = 1").contains("expected == or !="));
        assert!(refused(".kind ==").contains("must be JSON"));
        assert!(refused(".a..b").contains("followed by a name"));
        assert!(refused("..").contains("followed by a name"));
        assert!(refused(".a[x]").contains("not an array index"));
        assert!(refused(".a[1").contains("expected ]"));
        assert!(refused(r#"."open"#).contains("closing"));
        let message = refused(".kind ~ 1");
        assert!(message.starts_with("--filter \".kind ~ 1\""), "{message}");
        assert!(Filter::parse::<&str>(&[]).unwrap().is_empty());
    }
}
