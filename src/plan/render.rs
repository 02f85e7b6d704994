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
    yellow: Style,
    cyan: Style,
    gray: Style,
    bold: Style,
    bold_red: Style,
    bold_green: Style,
    bold_yellow: Style,
}

impl Palette {
    pub fn new(colors: bool) -> Self {
        let s = || Style::new().force_styling(colors);
        Self {
            green: s().green(),
            red: s().red(),
            yellow: s().yellow(),
            cyan: s().cyan(),
            gray: s().color256(244),
            bold: s().bold(),
            bold_red: s().bold().red(),
            bold_green: s().bold().green(),
            bold_yellow: s().bold().yellow(),
        }
    }

    fn symbol(&self, a: Action) -> String {
        match a {
            Action::Create => format!("  {}", self.green.apply_to("+")),
            Action::Update => format!("  {}", self.yellow.apply_to("~")),
            Action::Replace => format!("{}/{}", self.red.apply_to("-"), self.green.apply_to("+")),
            Action::Delete => format!("  {}", self.red.apply_to("-")),
            Action::NoOp => "   ".to_string(),
        }
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
    let addr = p.bold.apply_to(c.address.to_string());
    let verb = match c.actions {
        Action::Create => "will be created".to_string(),
        Action::Update => "will be updated in-place".to_string(),
        Action::Replace => format!("must be {}", p.red.apply_to("replaced")),
        Action::Delete => format!("will be {}", p.bold_red.apply_to("destroyed")),
        Action::NoOp => "is unchanged".to_string(),
    };
    let _ = writeln!(out, "  {} {addr} {verb}", p.gray.apply_to("#"));
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

    let lines = attr_lines(c);
    let width = lines.iter().map(|l| l.key.len()).max().unwrap_or(0);
    let mut hidden = 0;
    for l in &lines {
        let sym = match l.kind {
            LineKind::Add => p.green.apply_to("+"),
            LineKind::Remove => p.red.apply_to("-"),
            LineKind::Change => p.yellow.apply_to("~"),
            LineKind::Same => {
                hidden += 1;
                continue;
            }
        };
        let _ = write!(out, "      {sym} {:<width$} = {}", l.key, l.value);
        if l.forces {
            let _ = write!(out, "  {}", p.red.apply_to("# forces replacement"));
        }
        let _ = out.write_char('\n');
    }
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
        for (name, doc) in &c.documents {
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

struct AttrLine<'a> {
    key: &'a str,
    value: String,
    kind: LineKind,
    forces: bool,
}

const KNOWN_AFTER_APPLY: &str = "(known after apply)";

fn attr_lines(c: &ResourceChange) -> Vec<AttrLine<'_>> {
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
    keys.into_iter()
        .map(|k| {
            let unknown = c.after_unknown.contains(k);
            let forces = c.replace_paths.contains(k);
            let (kind, value) = match (c.actions, before.get(k), after.get(k)) {
                (Action::Delete, Some(b), _) => {
                    (LineKind::Remove, format!("{} -> null", show_block(b)))
                }
                (_, Some(Value::Array(b)), Some(Value::Array(a)))
                    if !unknown && b != a && long(b, a) =>
                {
                    (LineKind::Change, list_diff(b, a))
                }
                (_, Some(Value::Object(b)), Some(Value::Object(a))) if !unknown && b != a => {
                    (LineKind::Change, map_diff(b, a))
                }
                (_, None, _) if unknown => (LineKind::Add, KNOWN_AFTER_APPLY.to_string()),
                (_, Some(b), _) if unknown => (
                    LineKind::Change,
                    format!("{} -> {KNOWN_AFTER_APPLY}", show(b)),
                ),
                (_, None, Some(a)) => (LineKind::Add, show_block(a)),
                (_, Some(b), None) => (LineKind::Remove, format!("{} -> null", show_block(b))),
                (_, Some(b), Some(a)) if b != a => {
                    (LineKind::Change, format!("{} -> {}", show(b), show(a)))
                }
                (_, Some(b), Some(_)) => (LineKind::Same, show(b)),
                (_, None, None) => (LineKind::Same, String::new()),
            };
            AttrLine {
                key: k.as_ref(),
                value,
                kind,
                forces,
            }
        })
        .collect()
}

/// Whether a list change is worth showing element by element.
fn long(b: &[Value], a: &[Value]) -> bool {
    show(&Value::Array(b.to_vec())).len() + show(&Value::Array(a.to_vec())).len() > 120
}

/// Indentation of a list's elements and its closing bracket.
const ITEM: &str = "            ";
const CLOSE: &str = "        ]";

/// A long list's change, element by element as Terraform shows it: what
/// goes (`-`), what comes (`+`), and how many elements stay, hidden.
fn list_diff(before: &[Value], after: &[Value]) -> String {
    let b: Vec<String> = before.iter().map(show).collect();
    let a: Vec<String> = after.iter().map(show).collect();
    let mut out = String::from("[\n");
    let mut same = 0;
    for op in similar::capture_diff_slices(similar::Algorithm::Myers, &b, &a) {
        for change in op.iter_changes(&b, &a) {
            match change.tag() {
                similar::ChangeTag::Equal => same += 1,
                similar::ChangeTag::Delete => {
                    out.push_str(&format!("{}- {}\n", &ITEM[2..], change.value()))
                }
                similar::ChangeTag::Insert => {
                    out.push_str(&format!("{}+ {}\n", &ITEM[2..], change.value()))
                }
            }
        }
    }
    if same > 0 {
        out.push_str(&format!(
            "{ITEM}# ({same} unchanged element{} hidden)\n",
            plural(same)
        ));
    }
    out.push_str(CLOSE);
    out
}

/// A map's change key by key: what changed (`~`), came (`+`) or went
/// (`-`), and how many keys stay, hidden — a one-key drift is one short
/// line, not the whole map twice.
fn map_diff(
    before: &serde_json::Map<String, Value>,
    after: &serde_json::Map<String, Value>,
) -> String {
    let mut keys: Vec<&String> = before.keys().chain(after.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut out = String::from("{\n");
    let mut same = 0;
    for k in keys {
        let key = Value::String(k.clone());
        match (before.get(k), after.get(k)) {
            (Some(b), Some(a)) if b == a => same += 1,
            (Some(b), Some(a)) => out.push_str(&format!(
                "{}~ {key} = {} -> {}\n",
                &ITEM[2..],
                show(b),
                show(a)
            )),
            (None, Some(a)) => out.push_str(&format!("{}+ {key} = {}\n", &ITEM[2..], show(a))),
            (Some(b), None) => out.push_str(&format!("{}- {key} = {}\n", &ITEM[2..], show(b))),
            (None, None) => {}
        }
    }
    if same > 0 {
        out.push_str(&format!(
            "{ITEM}# ({same} unchanged key{} hidden)\n",
            plural(same)
        ));
    }
    out.push_str("        }");
    out
}

/// A value as a created resource shows it: a long list one element a line,
/// a long map one key a line.
fn show_block(v: &Value) -> String {
    // Shown once: a short value is that text, a long one is laid out.
    let one = show(v);
    if one.len() <= 100 {
        return one;
    }
    match v {
        Value::Object(m) => {
            let mut out = String::from("{\n");
            for (k, x) in m {
                let _ = writeln!(out, "{ITEM}{} = {},", Value::String(k.clone()), show(x));
            }
            out.push_str("        }");
            out
        }
        Value::Array(items) => {
            let mut out = String::from("[\n");
            for i in items {
                let _ = writeln!(out, "{ITEM}{},", show(i));
            }
            out.push_str(CLOSE);
            out
        }
        _ => one,
    }
}

/// A value as it reads in a plan: JSON, with lists spaced like Terraform's.
fn show(v: &Value) -> String {
    match v {
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(show).collect::<Vec<_>>().join(", ")
        ),
        other => other.to_string(),
    }
}

fn pretty(v: &Option<Value>) -> String {
    match v {
        Some(v) => serde_json::to_string_pretty(v).unwrap_or_default() + "\n",
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
