//! Human rendering of a plan, Terraform-style: one block per changed
//! resource with sorted, aligned attribute lines, a unified diff of a
//! changed Firecracker config, and the `Plan: X to add, …` summary.
//! Deterministic; colored only when asked (the CLI decides: TTY, NO_COLOR,
//! --no-color). Values are printed JSON-escaped, so nothing read from the
//! host can inject terminal control sequences.

use super::{Action, ActionReason, Plan, ResourceChange};
use crate::resources::DocumentChange;
use console::Style;
use serde_json::Value;
use similar::TextDiff;
use std::fmt::Write;

pub struct Palette {
    green: Style,
    red: Style,
    cyan: Style,
    gray: Style,
    bold: Style,
    bold_red: Style,
    bold_green: Style,
    bold_yellow: Style,
    /// What every change and attribute line repeats, styled once: the
    /// actions' symbols (in `Action` order), the attribute lines' marks,
    /// the comment sign and the replacement note.
    symbols: [String; 5],
    plus: String,
    minus: String,
    tilde: String,
    hash: String,
    forces: String,
}

impl Palette {
    pub fn new(colors: bool) -> Self {
        let s = || Style::new().force_styling(colors);
        let (green, red, yellow) = (s().green(), s().red(), s().yellow());
        let gray = s().color256(244);
        let symbols = [
            format!("  {}", green.apply_to("+")),
            format!("  {}", yellow.apply_to("~")),
            format!("{}/{}", red.apply_to("-"), green.apply_to("+")),
            format!("  {}", red.apply_to("-")),
            "   ".to_string(),
        ];
        Self {
            plus: green.apply_to("+").to_string(),
            minus: red.apply_to("-").to_string(),
            tilde: yellow.apply_to("~").to_string(),
            hash: gray.apply_to("#").to_string(),
            forces: red.apply_to("# forces replacement").to_string(),
            symbols,
            green,
            red,
            cyan: s().cyan(),
            gray,
            bold: s().bold(),
            bold_red: s().bold().red(),
            bold_green: s().bold().green(),
            bold_yellow: s().bold().yellow(),
        }
    }

    fn symbol(&self, a: Action) -> &str {
        let i = match a {
            Action::Create => 0,
            Action::Update => 1,
            Action::Replace => 2,
            Action::Delete => 3,
            Action::NoOp => 4,
        };
        &self.symbols[i]
    }
}

pub fn render(plan: &Plan, colors: bool) -> String {
    let mut out = String::new();
    render_to(plan, colors, &mut out);
    out
}

/// `render` into `out` as it goes: a big plan's text is never held whole.
pub fn render_to<W: Write>(plan: &Plan, colors: bool, out: &mut W) {
    let p = Palette::new(colors);
    for w in &plan.warnings {
        // Warnings quote what the probes found (names, errors): escaped.
        let w = crate::text::one_line(w);
        let _ = writeln!(out, "{} {w}", p.bold_yellow.apply_to("Warning:"));
    }
    if !plan.warnings.is_empty() {
        let _ = out.write_char('\n');
    }
    if !plan.overrides.is_empty() {
        let _ = writeln!(
            out,
            "{}",
            p.bold.apply_to("Overrides set by hand on this node:")
        );
        for o in &plan.overrides {
            let _ = writeln!(out, "  {}", crate::text::one_line(&o.text));
        }
        let _ = out.write_char('\n');
    }

    let changes: Vec<&ResourceChange> = plan
        .resource_changes
        .iter()
        .filter(|c| c.is_change())
        .collect();
    if changes.is_empty() {
        if plan.targets.is_empty() {
            let _ = writeln!(
                out,
                "{} The node matches the desired state.",
                p.bold_green.apply_to("No changes.")
            );
        } else {
            let _ = writeln!(
                out,
                "{} The targeted resources ({}, and what they depend on) match the desired state; the rest of the node was not planned.",
                p.bold_green.apply_to("No changes."),
                plan.targets.join(", ")
            );
        }
        render_kept(plan, &p, out);
        return;
    }

    let _ = out.write_str("Resource actions are indicated with the following symbols:\n");
    let legend = [
        (Action::Create, "create"),
        (Action::Update, "update in-place"),
        (Action::Replace, "destroy and then create replacement"),
        (Action::Delete, "destroy"),
    ];
    for (a, text) in legend {
        if changes.iter().any(|c| c.actions == a) {
            let _ = writeln!(out, "{} {text}", p.symbol(a));
        }
    }
    let _ = out.write_str("\nmvm will perform the following actions:\n");

    for c in &changes {
        let _ = out.write_char('\n');
        render_change(c, &plan.overrides, &p, out);
    }

    let s = plan.summary;
    let only = if plan.targets.is_empty() {
        String::new()
    } else {
        format!(
            " (only {} and what they depend on; the rest of the node was not planned)",
            plan.targets.join(", ")
        )
    };
    let _ = writeln!(
        out,
        "\n{} {} to add, {} to change, {} to destroy{only}.",
        p.bold.apply_to("Plan:"),
        s.add,
        s.change,
        s.destroy
    );
    if s.blocked > 0 {
        let _ = writeln!(
            out,
            "{} {} of these changes cannot be applied on this node; apply will fail them and skip what depends on them:",
            p.bold_red.apply_to("Blocked:"),
            s.blocked
        );
        let blocked: Vec<(&ResourceChange, &String)> = changes
            .iter()
            .filter_map(|c| c.blocked.as_ref().map(|b| (*c, b)))
            .collect();
        let width = blocked
            .iter()
            .map(|(c, _)| c.address.to_string().len())
            .max()
            .unwrap_or(0);
        for (c, why) in blocked {
            let _ = writeln!(
                out,
                "  {:<width$}  {}",
                c.address.to_string(),
                crate::text::one_line(why)
            );
        }
    }
    render_kept(plan, &p, out);
}

fn render_kept<W: Write>(plan: &Plan, p: &Palette, out: &mut W) {
    if plan.kept_tenants.is_empty() {
        return;
    }
    let n = plan.kept_tenants.len();
    let _ = writeln!(
        out,
        "\n{} {n} tenant{} on the node {} not in desired.json and {} left as {} (run with --prune to delete {}):",
        p.bold.apply_to("Kept:"),
        plural(n),
        if n == 1 { "is" } else { "are" },
        if n == 1 { "is" } else { "are" },
        if n == 1 { "it is" } else { "they are" },
        if n == 1 { "it" } else { "them" },
    );
    for k in &plan.kept_tenants {
        let r = k.resources.len();
        let _ = writeln!(out, "  {} ({r} resource{})", k.tenant_id, plural(r));
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn render_change<W: Write>(
    c: &ResourceChange,
    overrides: &[crate::spec::overrides::OverrideNote],
    p: &Palette,
    out: &mut W,
) {
    let verb = match c.actions {
        Action::Create => "will be created",
        Action::Update => "will be updated in-place",
        Action::Replace => "must be ",
        Action::Delete => "will be ",
        Action::NoOp => "is unchanged",
    };
    let _ = write!(out, "  {} {} {verb}", p.hash, p.bold.apply_to(&c.address));
    let _ = match c.actions {
        Action::Replace => writeln!(out, "{}", p.red.apply_to("replaced")),
        Action::Delete => writeln!(out, "{}", p.bold_red.apply_to("destroyed")),
        _ => out.write_char('\n'),
    };
    let because = match &c.action_reason {
        Some(ActionReason::ReplaceBecauseDependencyReplaced { dependency }) => {
            Some(format!("because {dependency} is replaced"))
        }
        Some(ActionReason::ReplaceBecauseDependencyCreated { dependency }) => Some(format!(
            "because {dependency} is missing and will be created; the running VM cannot use a new one"
        )),
        Some(ActionReason::DeleteBecauseNotInDesired) => {
            Some("because the tenant is not in desired.json and --prune was given".to_string())
        }
        Some(ActionReason::DeleteBecauseStopped) => {
            Some("because the tenant's state is \"stopped\"".to_string())
        }
        Some(ActionReason::DeleteBecauseUnused) => {
            Some("because nothing in desired.json needs it".to_string())
        }
        Some(ActionReason::ReplaceBecauseCannotUpdate) | None => None,
    };
    if let Some(b) = because {
        let _ = writeln!(out, "  {}", p.gray.apply_to(format!("# ({b})")));
    }
    // Why it differs from the control plane's document: what is set by
    // hand on its tenant.
    let by_hand: Vec<&str> = overrides
        .iter()
        .filter(|o| o.in_effect && Some(&o.tenant_id) == c.address.tenant())
        .map(|o| match o.kind.as_str() {
            "pin" => "its revision is pinned by hand",
            "state" => "its state is set by hand",
            _ => "the tenant is created by hand",
        })
        .collect();
    if !by_hand.is_empty() {
        let _ = writeln!(
            out,
            "  {}",
            p.gray
                .apply_to(format!("# ({} on this node)", by_hand.join(", ")))
        );
    }
    if let Some(why) = &c.blocked {
        let _ = writeln!(
            out,
            "  {}",
            p.red.apply_to(format!(
                "# (cannot be applied on this node: {})",
                crate::text::one_line(why)
            ))
        );
    }
    let _ = writeln!(out, "{} {}", p.symbol(c.actions), c.address);

    let mut hidden = 0;
    each_attr(c, |key, width, kind, value, forces| {
        let sym = match kind {
            LineKind::Add => &p.plus,
            LineKind::Remove => &p.minus,
            LineKind::Change => &p.tilde,
            LineKind::Same => {
                hidden += 1;
                return;
            }
        };
        let _ = out.write_str("      ");
        let _ = out.write_str(sym);
        let _ = out.write_char(' ');
        let _ = out.write_str(key);
        pad(out, width - key.len());
        let _ = out.write_str(" = ");
        let _ = out.write_str(value);
        if forces {
            let _ = out.write_str("  ");
            let _ = out.write_str(&p.forces);
        }
        let _ = out.write_char('\n');
    });
    if hidden > 0 {
        let _ = writeln!(
            out,
            "        {}",
            p.gray.apply_to(format!(
                "# ({hidden} unchanged attribute{} hidden)",
                plural(hidden)
            ))
        );
    }
    if matches!(c.actions, Action::Replace | Action::Update) {
        for (name, doc) in c.documents.iter() {
            render_document_diff(name, doc, p, out);
        }
    }
}

#[derive(PartialEq, Eq)]
enum LineKind {
    Add,
    Remove,
    Change,
    Same,
}

const KNOWN_AFTER_APPLY: &str = "(known after apply)";

/// Each attribute of a change in name order, as it is shown: its name,
/// the width names are aligned to, the kind of line, the value text (empty
/// for an unchanged attribute, which is only counted) and whether it
/// forces replacement. One buffer serves every value.
fn each_attr(c: &ResourceChange, mut line: impl FnMut(&str, usize, LineKind, &str, bool)) {
    static EMPTY: crate::resources::Attrs = std::collections::BTreeMap::new();
    let before = c.before.as_ref().unwrap_or(&EMPTY);
    let after = c.after.as_ref().unwrap_or(&EMPTY);
    let mut keys: Vec<&crate::resources::AttrName> = before
        .keys()
        .chain(after.keys())
        .chain(c.after_unknown.iter())
        .collect();
    keys.sort();
    keys.dedup();
    let width = keys.iter().map(|k| k.len()).max().unwrap_or(0);
    let mut value = String::new();
    for k in keys {
        value.clear();
        let unknown = c.after_unknown.contains(k);
        let kind = match (c.actions, before.get(k), after.get(k)) {
            (Action::Delete, Some(b), _) => {
                show_block(&mut value, b);
                value.push_str(" -> null");
                LineKind::Remove
            }
            (_, Some(Value::Array(b)), Some(Value::Array(a)))
                if !unknown && b != a && long(b, a) =>
            {
                list_diff(&mut value, b, a);
                LineKind::Change
            }
            (_, Some(Value::Object(b)), Some(Value::Object(a))) if !unknown && b != a => {
                map_diff(&mut value, b, a);
                LineKind::Change
            }
            (_, None, _) if unknown => {
                value.push_str(KNOWN_AFTER_APPLY);
                LineKind::Add
            }
            (_, Some(b), _) if unknown => {
                show_into(&mut value, b);
                value.push_str(" -> ");
                value.push_str(KNOWN_AFTER_APPLY);
                LineKind::Change
            }
            (_, None, Some(a)) => {
                show_block(&mut value, a);
                LineKind::Add
            }
            (_, Some(b), None) => {
                show_block(&mut value, b);
                value.push_str(" -> null");
                LineKind::Remove
            }
            (_, Some(b), Some(a)) if b != a => {
                show_into(&mut value, b);
                value.push_str(" -> ");
                show_into(&mut value, a);
                LineKind::Change
            }
            (_, Some(_), Some(_)) | (_, None, None) => LineKind::Same,
        };
        line(k.as_ref(), width, kind, &value, c.replace_paths.contains(k));
    }
}

/// `n` spaces.
fn pad<W: Write>(out: &mut W, mut n: usize) {
    const SPACES: &str = "                                                                ";
    while n > 0 {
        let k = n.min(SPACES.len());
        let _ = out.write_str(&SPACES[..k]);
        n -= k;
    }
}

/// Whether a list change is worth showing element by element.
fn long(b: &[Value], a: &[Value]) -> bool {
    let mut text = String::new();
    show_list(&mut text, b);
    show_list(&mut text, a);
    text.len() > 120
}

/// Indentation of a list's elements and its closing bracket.
const ITEM: &str = "            ";
const CLOSE: &str = "        ]";

/// A long list's change, element by element as Terraform shows it: what
/// goes (`-`), what comes (`+`), and how many elements stay, hidden.
fn list_diff(out: &mut String, before: &[Value], after: &[Value]) {
    let b: Vec<String> = before.iter().map(show).collect();
    let a: Vec<String> = after.iter().map(show).collect();
    out.push_str("[\n");
    let mut same = 0;
    for op in similar::capture_diff_slices(similar::Algorithm::Myers, &b, &a) {
        for change in op.iter_changes(&b, &a) {
            match change.tag() {
                similar::ChangeTag::Equal => same += 1,
                similar::ChangeTag::Delete => {
                    let _ = writeln!(out, "{}- {}", &ITEM[2..], change.value());
                }
                similar::ChangeTag::Insert => {
                    let _ = writeln!(out, "{}+ {}", &ITEM[2..], change.value());
                }
            }
        }
    }
    if same > 0 {
        let _ = writeln!(
            out,
            "{ITEM}# ({same} unchanged element{} hidden)",
            plural(same)
        );
    }
    out.push_str(CLOSE);
}

/// A map's change key by key: what changed (`~`), came (`+`) or went
/// (`-`), and how many keys stay, hidden — a one-key drift is one short
/// line, not the whole map twice.
fn map_diff(
    out: &mut String,
    before: &serde_json::Map<String, Value>,
    after: &serde_json::Map<String, Value>,
) {
    let mut keys: Vec<&String> = before.keys().chain(after.keys()).collect();
    keys.sort();
    keys.dedup();
    out.push_str("{\n");
    let mut same = 0;
    for k in keys {
        let key = Value::String(k.clone());
        let _ = match (before.get(k), after.get(k)) {
            (Some(b), Some(a)) if b == a => {
                same += 1;
                Ok(())
            }
            (Some(b), Some(a)) => {
                writeln!(out, "{}~ {key} = {} -> {}", &ITEM[2..], show(b), show(a))
            }
            (None, Some(a)) => writeln!(out, "{}+ {key} = {}", &ITEM[2..], show(a)),
            (Some(b), None) => writeln!(out, "{}- {key} = {}", &ITEM[2..], show(b)),
            (None, None) => Ok(()),
        };
    }
    if same > 0 {
        let _ = writeln!(out, "{ITEM}# ({same} unchanged key{} hidden)", plural(same));
    }
    out.push_str("        }");
}

/// A value as a created resource shows it, appended to `out`: a long list
/// one element a line, a long map one key a line.
fn show_block(out: &mut String, v: &Value) {
    // Shown once: a short value is that text, a long one is laid out.
    let start = out.len();
    show_into(out, v);
    if out.len() - start <= 100 {
        return;
    }
    match v {
        Value::Object(m) => {
            out.truncate(start);
            out.push_str("{\n");
            for (k, x) in m {
                out.push_str(ITEM);
                json_str(out, k);
                out.push_str(" = ");
                show_into(out, x);
                out.push_str(",\n");
            }
            out.push_str("        }");
        }
        Value::Array(items) => {
            out.truncate(start);
            out.push_str("[\n");
            for i in items {
                out.push_str(ITEM);
                show_into(out, i);
                out.push_str(",\n");
            }
            out.push_str(CLOSE);
        }
        _ => {}
    }
}

/// A value as it reads in a plan: JSON, with lists spaced like Terraform's.
fn show(v: &Value) -> String {
    let mut out = String::new();
    show_into(&mut out, v);
    out
}

/// `show`, appended to `out`.
fn show_into(out: &mut String, v: &Value) {
    match v {
        Value::Array(items) => show_list(out, items),
        Value::String(s) => json_str(out, s),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Null => out.push_str("null"),
        other => {
            let _ = write!(out, "{other}");
        }
    }
}

fn show_list(out: &mut String, items: &[Value]) {
    out.push('[');
    for (i, x) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        show_into(out, x);
    }
    out.push(']');
}

/// A string as JSON writes it: quoted, with `"`, `\` and control
/// characters escaped (the common string needs none, and is copied).
fn json_str(out: &mut String, s: &str) {
    if !crate::text::any_byte(s, |b| b < 0x20 || b == b'"' || b == b'\\') {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        out.push_str(&serde_json::to_string(s).expect("a string serializes"));
    }
}

fn pretty(v: &Option<crate::resources::Document>) -> String {
    match v {
        Some(v) => serde_json::to_string_pretty(&v.value()).unwrap_or_default() + "\n",
        None => String::new(),
    }
}

/// A document's unified diff, headed by its name (`firecracker_config`
/// reads `# firecracker config:`).
fn render_document_diff<W: Write>(name: &str, cfg: &DocumentChange, p: &Palette, out: &mut W) {
    let before = pretty(&cfg.before);
    let after = pretty(&cfg.after);
    if before == after {
        return;
    }
    let _ = writeln!(
        out,
        "\n        {}",
        p.gray.apply_to(format!("# {}:", name.replace('_', " ")))
    );
    let diff = TextDiff::from_lines(&before, &after);
    let text = diff
        .unified_diff()
        .context_radius(2)
        .header("before", "after")
        .to_string();
    for line in text.lines() {
        let styled = if line.starts_with("+++") || line.starts_with("---") {
            p.bold.apply_to(line).to_string()
        } else if line.starts_with('+') {
            p.green.apply_to(line).to_string()
        } else if line.starts_with('-') {
            p.red.apply_to(line).to_string()
        } else if line.starts_with("@@") {
            p.cyan.apply_to(line).to_string()
        } else {
            line.to_string()
        };
        let _ = writeln!(out, "        {styled}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A map's change shows each key that changed, came or went, and
    /// counts the rest.
    #[test]
    fn a_map_change_is_shown_key_by_key() {
        let map = |v: Value| v.as_object().unwrap().clone();
        let before = map(serde_json::json!({"a": "1", "b": "2", "c": "3", "same": "x"}));
        let after = map(serde_json::json!({"a": "9", "c": "3", "d": "4", "same": "x"}));
        let mut out = String::new();
        map_diff(&mut out, &before, &after);
        assert_eq!(
            out,
            "{\n          ~ \"a\" = \"1\" -> \"9\"\n          - \"b\" = \"2\"\n          + \"d\" = \"4\"\n            # (2 unchanged keys hidden)\n        }"
        );
    }
}
