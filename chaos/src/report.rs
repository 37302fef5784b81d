//! Reports: an HTML timeline of a history, and a markdown summary of a simulation campaign.
//!
//! [`html`] renders one self-contained page (inline CSS and SVG, no scripts, no external assets):
//! one lane per client, each operation a bar from invocation to completion colored by outcome,
//! the operations a checker blames emphasized, nemesis faults as shaded bands, then a table of the
//! blamed operations with the checker's message and the list of faults. A history of more than
//! [`RENDER_OPS_MAX`] operations is cut to the time around the blamed operations so the page stays
//! small; the page says what was cut.
//!
//! [`describe_request`] and [`describe_outcome`] are the one-line text forms of history entries,
//! shared with the checkers' messages. All text reaching the page goes through [`escape`].

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::history::{
    CompareOp, CompareTarget, FaultEvent, History, KeyValue, Operation, Outcome, Request, Response, TxnOp, TxnOpResult,
};

/// Histories up to this many operations are drawn whole; larger ones are cut to a window.
pub const RENDER_OPS_MAX: usize = 2_000;
/// The least margin drawn on each side of the highlighted operations, in ns.
const MARGIN_NS_MIN: u64 = 50 * NS_PER_MS;
const NS_PER_MS: u64 = 1_000_000;
/// Key-values of one range response shown in a tooltip.
const RANGE_KVS_SHOWN_MAX: usize = 8;
/// Geometry, in px.
const LABEL_PX: f64 = 90.0;
const TIMELINE_PX: f64 = 1_100.0;
const RIGHT_PAD_PX: f64 = 20.0;
const LANE_PX: f64 = 20.0;
const BAR_PX: f64 = 14.0;
const BAR_MIN_PX: f64 = 2.0;
const FAULT_ROW_PX: f64 = 14.0;
const FAULT_ROWS_MAX: usize = 6;
const AXIS_PX: f64 = 34.0;
/// About this many ticks on the time axis.
const TICKS_TARGET: u64 = 10;

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;color:#222}\
pre.message{background:#f6f6f6;border:1px solid #ddd;padding:.8em;white-space:pre-wrap}\
p.cut{color:#8a5a00}\
svg text{font-size:11px;font-family:monospace}\
rect.op{stroke:#333;stroke-width:.5}rect.op:hover{stroke:#000;stroke-width:2}\
rect.ok{fill:#4caf50}rect.fail{fill:#9e9e9e}rect.info{fill:#ffb300}\
rect.dim{opacity:.3}rect.hl{stroke:#d50000;stroke-width:2.5;opacity:1}\
rect.fault{fill:#e53935;fill-opacity:.10;stroke:#e53935;stroke-opacity:.4}\
text.fault{fill:#b71c1c}line.lane{stroke:#eee}line.tick{stroke:#bbb}\
table{border-collapse:collapse;margin-top:1em}td,th{border:1px solid #ccc;padding:2px 6px;\
font-family:monospace;font-size:12px;text-align:left;vertical-align:top}\
span.key{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:middle}";

/// Escapes `text` for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// `ns` as milliseconds with microsecond precision: `1234.567`.
fn ms(ns: u64) -> String {
    format!("{}.{:03}", ns / NS_PER_MS, (ns % NS_PER_MS) / 1_000)
}

/// One line describing a request: `put k03 = c1-4`, `txn if k03 mod == 7 then ... else ...`.
pub fn describe_request(request: &Request) -> String {
    match request {
        Request::Get { key } => format!("get {key}"),
        Request::Range { start, end } => format!("range [{start}, {end})"),
        Request::Put { key, value } => format!("put {key} = {value}"),
        Request::Delete { key } => format!("delete {key}"),
        Request::Txn { compares, success, failure } => {
            let guard: Vec<String> = compares
                .iter()
                .map(|c| {
                    let op = match c.op {
                        CompareOp::Equal => "==",
                        CompareOp::NotEqual => "!=",
                        CompareOp::Greater => ">",
                        CompareOp::Less => "<",
                    };
                    let (field, target) = match &c.target {
                        CompareTarget::Value(v) => ("value", format!("{v:?}")),
                        CompareTarget::ModRevision(r) => ("mod", r.to_string()),
                        CompareTarget::CreateRevision(r) => ("create", r.to_string()),
                        CompareTarget::Version(v) => ("version", v.to_string()),
                    };
                    format!("{} {field} {op} {target}", c.key)
                })
                .collect();
            let mut text = String::from("txn");
            if !guard.is_empty() {
                let _ = write!(text, " if {}", guard.join(" && "));
            }
            let _ = write!(text, " then {}", describe_ops(success));
            if !failure.is_empty() {
                let _ = write!(text, " else {}", describe_ops(failure));
            }
            text
        }
    }
}

fn describe_ops(ops: &[TxnOp]) -> String {
    if ops.is_empty() {
        return "nothing".to_string();
    }
    let ops: Vec<String> = ops
        .iter()
        .map(|op| match op {
            TxnOp::Get { key } => format!("get {key}"),
            TxnOp::Put { key, value } => format!("put {key} = {value}"),
            TxnOp::Delete { key } => format!("delete {key}"),
        })
        .collect();
    ops.join("; ")
}

fn describe_kv(kv: Option<&KeyValue>) -> String {
    match kv {
        Some(kv) => format!("{} = {} (mod {})", kv.key, kv.value, kv.mod_revision),
        None => "absent".to_string(),
    }
}

/// One line describing an outcome: `ok rev 12: k03 = c1-4 (mod 10)`, `indeterminate: timeout`.
pub fn describe_outcome(outcome: &Outcome) -> String {
    let response = match outcome {
        Outcome::Ok(response) => response,
        Outcome::Fail { reason } => return format!("fail: {reason}"),
        Outcome::Indeterminate { reason } => return format!("indeterminate: {reason}"),
    };
    let revision = response.revision();
    match response {
        Response::Get { kv, .. } => format!("ok rev {revision}: {}", describe_kv(kv.as_ref())),
        Response::Range { kvs, .. } => {
            let shown: Vec<String> = kvs.iter().take(RANGE_KVS_SHOWN_MAX).map(|kv| describe_kv(Some(kv))).collect();
            let more = if kvs.len() > RANGE_KVS_SHOWN_MAX { ", ..." } else { "" };
            format!("ok rev {revision}: {} kvs [{}{more}]", kvs.len(), shown.join(", "))
        }
        Response::Put { .. } => format!("ok rev {revision}"),
        Response::Delete { deleted, .. } => format!("ok rev {revision}: deleted {deleted}"),
        Response::Txn { succeeded, results, .. } => {
            let results: Vec<String> = results
                .iter()
                .map(|result| match result {
                    TxnOpResult::Get(kv) => describe_kv(kv.as_ref()),
                    TxnOpResult::Put => "put".to_string(),
                    TxnOpResult::Delete { deleted } => format!("deleted {deleted}"),
                })
                .collect();
            let branch = if *succeeded { "succeeded" } else { "failed" };
            format!("ok rev {revision}: {branch} [{}]", results.join("; "))
        }
    }
}

/// The part of a history drawn: a time span and the operations in it.
struct View<'a> {
    start_ns: u64,
    end_ns: u64,
    ops: Vec<&'a Operation>,
    /// Every client of the history, ascending: one lane each.
    clients: Vec<u32>,
    /// What was left out, if anything.
    cut: Option<String>,
}

fn overlaps(op: &Operation, start_ns: u64, end_ns: u64) -> bool {
    op.invoke_ns <= end_ns && op.complete_ns >= start_ns
}

/// The span of the whole history: operations and faults.
fn full_span(history: &History) -> (u64, u64) {
    let times = history.ops.iter().flat_map(|op| [op.invoke_ns, op.complete_ns]);
    let fault_times = history.faults.iter().flat_map(|f| [Some(f.start_ns), f.end_ns]).flatten();
    let all: Vec<u64> = times.chain(fault_times).collect();
    let start = all.iter().copied().min().unwrap_or(0);
    let end = all.iter().copied().max().unwrap_or(0);
    (start, end.max(start + 1))
}

/// The span to focus on in a large history: the highlighted ops, or else the first ones.
fn focus_span(history: &History, highlight: &BTreeSet<u64>) -> (u64, u64) {
    let marked: Vec<&Operation> = history.ops.iter().filter(|op| highlight.contains(&op.id)).collect();
    match (marked.iter().map(|op| op.invoke_ns).min(), marked.iter().map(|op| op.complete_ns).max()) {
        (Some(start), Some(end)) => (start, end),
        _ => {
            let first = history.ops.first().map_or(0, |op| op.invoke_ns);
            let last = history.ops.get(RENDER_OPS_MAX - 1).map_or(first, |op| op.invoke_ns);
            (first, last)
        }
    }
}

fn select_view<'a>(history: &'a History, highlight: &BTreeSet<u64>) -> View<'a> {
    let mut clients: Vec<u32> = history.ops.iter().map(|op| op.client).collect();
    clients.sort_unstable();
    clients.dedup();
    if history.ops.len() <= RENDER_OPS_MAX {
        let (start_ns, end_ns) = full_span(history);
        return View { start_ns, end_ns, ops: history.ops.iter().collect(), clients, cut: None };
    }
    let (focus_start, focus_end) = focus_span(history, highlight);
    let mut margin_ns = MARGIN_NS_MIN.max((focus_end - focus_start) / 2);
    let (mut start_ns, mut end_ns, mut ops);
    loop {
        start_ns = focus_start.saturating_sub(margin_ns);
        end_ns = focus_end.saturating_add(margin_ns).max(start_ns + 1);
        ops = history.ops.iter().filter(|op| overlaps(op, start_ns, end_ns)).collect::<Vec<_>>();
        if ops.len() <= RENDER_OPS_MAX || margin_ns == 0 {
            break;
        }
        margin_ns /= 2;
    }
    if ops.len() > RENDER_OPS_MAX {
        // Even the highlighted span alone is too busy: keep the highlighted ops and the earliest others.
        let mut others_left = RENDER_OPS_MAX.saturating_sub(highlight.len());
        ops.retain(|op| {
            if highlight.contains(&op.id) {
                return true;
            }
            let keep = others_left > 0;
            others_left = others_left.saturating_sub(1);
            keep
        });
    }
    let cut = format!(
        "Showing {} of {} operations, those overlapping {} ms to {} ms; the other {} are not drawn.",
        ops.len(),
        history.ops.len(),
        ms(start_ns),
        ms(end_ns),
        history.ops.len() - ops.len()
    );
    View { start_ns, end_ns, ops, clients, cut: Some(cut) }
}

/// Maps times in the view to x coordinates.
struct Scale {
    start_ns: u64,
    end_ns: u64,
}

impl Scale {
    fn x(&self, ns: u64) -> f64 {
        let clamped = ns.clamp(self.start_ns, self.end_ns);
        LABEL_PX + (clamped - self.start_ns) as f64 / (self.end_ns - self.start_ns) as f64 * TIMELINE_PX
    }
}

/// A round tick interval (1, 2 or 5 times a power of ten ns) giving about [`TICKS_TARGET`] ticks.
fn tick_step_ns(span_ns: u64) -> u64 {
    let raw = (span_ns / TICKS_TARGET).max(1);
    let mut power = 1u64;
    while power.saturating_mul(10) <= raw {
        power *= 10;
    }
    [1, 2, 5, 10].into_iter().map(|m| m * power).find(|&step| step >= raw).unwrap_or(10 * power)
}

fn svg_axis(svg: &mut String, scale: &Scale, top_px: f64, bottom_px: f64) {
    let step = tick_step_ns(scale.end_ns - scale.start_ns);
    let decimals = match step {
        s if s >= NS_PER_MS => 0,
        s if s >= NS_PER_MS / 10 => 1,
        s if s >= NS_PER_MS / 100 => 2,
        _ => 3,
    };
    let mut tick = scale.start_ns.div_ceil(step) * step;
    while tick <= scale.end_ns {
        let x = scale.x(tick);
        let label = format!("{:.*}", decimals, tick as f64 / NS_PER_MS as f64);
        let _ = write!(
            svg,
            "<line class=\"tick\" x1=\"{x:.1}\" y1=\"{top_px:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\"/>\
             <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{label}</text>",
            bottom_px + 4.0,
            bottom_px + 16.0
        );
        tick += step;
    }
    let _ = write!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">time (ms)</text>",
        LABEL_PX + TIMELINE_PX,
        bottom_px + 30.0
    );
}

fn svg_faults(svg: &mut String, faults: &[&FaultEvent], scale: &Scale, height_px: f64) {
    for (i, fault) in faults.iter().enumerate() {
        let x = scale.x(fault.start_ns);
        let end = fault.end_ns.unwrap_or(scale.end_ns);
        let width = (scale.x(end) - x).max(BAR_MIN_PX);
        let healed = if fault.end_ns.is_some() { "" } else { " (not healed)" };
        let label = escape(&format!("{}{healed}", fault.description));
        let row_y = FAULT_ROW_PX * ((i % FAULT_ROWS_MAX) as f64 + 1.0) - 3.0;
        let _ = write!(
            svg,
            "<g class=\"fault\"><rect class=\"fault\" x=\"{x:.1}\" y=\"0\" width=\"{width:.1}\" height=\"{height_px:.1}\">\
             <title>{label}: {} ms to {} ms</title></rect>\
             <text class=\"fault\" x=\"{:.1}\" y=\"{row_y:.1}\">{label}</text></g>",
            ms(fault.start_ns),
            ms(end),
            x + 2.0
        );
    }
}

fn svg_lanes(svg: &mut String, clients: &[u32], top_px: f64) {
    for (lane, client) in clients.iter().enumerate() {
        let y = top_px + lane as f64 * LANE_PX;
        let _ = write!(
            svg,
            "<g class=\"lane\"><text x=\"4\" y=\"{:.1}\">client {client}</text>\
             <line class=\"lane\" x1=\"{LABEL_PX}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\"/></g>",
            y + BAR_PX - 2.0,
            y + LANE_PX - 1.0,
            LABEL_PX + TIMELINE_PX,
            y + LANE_PX - 1.0
        );
    }
}

fn outcome_class(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Ok(_) => "ok",
        Outcome::Fail { .. } => "fail",
        Outcome::Indeterminate { .. } => "info",
    }
}

fn svg_ops(svg: &mut String, view: &View<'_>, scale: &Scale, highlight: &BTreeSet<u64>, top_px: f64) {
    for op in &view.ops {
        let lane = view.clients.binary_search(&op.client).unwrap_or(0);
        let y = top_px + lane as f64 * LANE_PX;
        let x = scale.x(op.invoke_ns);
        let width = (scale.x(op.complete_ns) - x).max(BAR_MIN_PX);
        let emphasis = match (highlight.is_empty(), highlight.contains(&op.id)) {
            (true, _) => "",
            (false, true) => " hl",
            (false, false) => " dim",
        };
        let tooltip = escape(&format!(
            "op {} client {} -> {}: {}\n{} ms to {} ms\n{}",
            op.id,
            op.client,
            op.member,
            describe_request(&op.request),
            ms(op.invoke_ns),
            ms(op.complete_ns),
            describe_outcome(&op.outcome)
        ));
        let _ = write!(
            svg,
            "<rect class=\"op {}{emphasis}\" data-op=\"{}\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{width:.1}\" \
             height=\"{BAR_PX}\"><title>{tooltip}</title></rect>",
            outcome_class(&op.outcome),
            op.id
        );
    }
}

fn svg_timeline(history: &History, view: &View<'_>, highlight: &BTreeSet<u64>) -> String {
    let scale = Scale { start_ns: view.start_ns, end_ns: view.end_ns };
    let faults: Vec<&FaultEvent> = history
        .faults
        .iter()
        .filter(|f| f.start_ns <= view.end_ns && f.end_ns.is_none_or(|end| end >= view.start_ns))
        .collect();
    let lanes_top_px = FAULT_ROW_PX * faults.len().min(FAULT_ROWS_MAX) as f64 + 4.0;
    let lanes_bottom_px = lanes_top_px + LANE_PX * view.clients.len() as f64;
    let width_px = LABEL_PX + TIMELINE_PX + RIGHT_PAD_PX;
    let height_px = lanes_bottom_px + AXIS_PX;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width_px}\" height=\"{height_px}\" \
         viewBox=\"0 0 {width_px} {height_px}\">"
    );
    svg_faults(&mut svg, &faults, &scale, lanes_bottom_px);
    svg_lanes(&mut svg, &view.clients, lanes_top_px);
    svg_ops(&mut svg, view, &scale, highlight, lanes_top_px);
    svg_axis(&mut svg, &scale, lanes_top_px, lanes_bottom_px);
    svg.push_str("</svg>");
    svg
}

fn highlight_table(history: &History, highlight: &[u64]) -> String {
    if highlight.is_empty() {
        return "<p>No operations highlighted.</p>".to_string();
    }
    let mut table = String::from(
        "<table class=\"highlight\"><tr><th>op</th><th>client</th><th>member</th><th>invoke (ms)</th>\
         <th>complete (ms)</th><th>request</th><th>outcome</th></tr>",
    );
    for id in highlight {
        let Some(op) = history.ops.iter().find(|op| op.id == *id) else {
            let _ = write!(table, "<tr><td>{id}</td><td colspan=\"6\">not in the history</td></tr>");
            continue;
        };
        let _ = write!(
            table,
            "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            outcome_class(&op.outcome),
            op.id,
            op.client,
            escape(&op.member),
            ms(op.invoke_ns),
            ms(op.complete_ns),
            escape(&describe_request(&op.request)),
            escape(&describe_outcome(&op.outcome))
        );
    }
    table.push_str("</table>");
    table
}

fn fault_table(faults: &[FaultEvent]) -> String {
    if faults.is_empty() {
        return "<p>No faults injected.</p>".to_string();
    }
    let mut table = String::from("<table class=\"faults\"><tr><th>start (ms)</th><th>end (ms)</th><th>fault</th></tr>");
    for fault in faults {
        let end = fault.end_ns.map_or_else(|| "not healed".to_string(), ms);
        let _ = write!(
            table,
            "<tr><td>{}</td><td>{end}</td><td>{}</td></tr>",
            ms(fault.start_ns),
            escape(&fault.description)
        );
    }
    table.push_str("</table>");
    table
}

/// One self-contained HTML page showing `history`, with the operations in `highlight` (ids)
/// emphasized and listed under the timeline with `message`.
pub fn html(history: &History, title: &str, message: &str, highlight: &[u64]) -> String {
    let marked: BTreeSet<u64> = highlight.iter().copied().collect();
    let view = select_view(history, &marked);
    let title = escape(title);
    let mut page = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>{STYLE}</style></head><body><h1>{title}</h1><pre class=\"message\">{}</pre>",
        escape(message)
    );
    let _ = write!(
        page,
        "<p>{} operations by {} clients, {} faults. Hover a bar for its request and outcome.\
         <span class=\"key\" style=\"background:#4caf50\"></span>ok\
         <span class=\"key\" style=\"background:#9e9e9e\"></span>failed\
         <span class=\"key\" style=\"background:#ffb300\"></span>indeterminate\
         <span class=\"key\" style=\"border:2px solid #d50000\"></span>highlighted\
         <span class=\"key\" style=\"background:#fbe0df\"></span>fault</p>",
        history.ops.len(),
        view.clients.len(),
        history.faults.len()
    );
    if let Some(cut) = &view.cut {
        let _ = write!(page, "<p class=\"cut\">{}</p>", escape(cut));
    }
    page.push_str(&svg_timeline(history, &view, &marked));
    page.push_str("<h2>Highlighted operations</h2>");
    page.push_str(&highlight_table(history, highlight));
    page.push_str("<h2>Faults</h2>");
    page.push_str(&fault_table(&history.faults));
    page.push_str("</body></html>\n");
    page
}

/// One row of a campaign summary: a scenario run over many seeds.
#[derive(Debug, Clone, PartialEq)]
pub struct CampaignRow {
    pub scenario: String,
    pub seeds: u64,
    pub ops: u64,
    pub faults: u64,
    pub violations: u64,
    /// Simulated time, summed over seeds.
    pub sim_secs: f64,
    /// Wall-clock time spent simulating.
    pub wall_secs: f64,
}

impl CampaignRow {
    /// A row for `scenario` with nothing counted yet.
    pub fn new(scenario: &str) -> Self {
        CampaignRow {
            scenario: scenario.to_string(),
            seeds: 0,
            ops: 0,
            faults: 0,
            violations: 0,
            sim_secs: 0.0,
            wall_secs: 0.0,
        }
    }
}

fn speed(sim_secs: f64, wall_secs: f64) -> String {
    if wall_secs > 0.0 {
        format!("{:.1}x", sim_secs / wall_secs)
    } else {
        "-".to_string()
    }
}

fn markdown_row(out: &mut String, name: &str, row: &CampaignRow) {
    let _ = writeln!(
        out,
        "| {name} | {} | {} | {} | {} | {:.1} | {:.1} | {} |",
        row.seeds,
        row.ops,
        row.faults,
        row.violations,
        row.sim_secs,
        row.wall_secs,
        speed(row.sim_secs, row.wall_secs)
    );
}

/// A markdown table of `rows` with a totals row and the simulated-to-wall speed.
pub fn campaign_markdown(rows: &[CampaignRow]) -> String {
    let mut out = String::from(
        "| scenario | seeds | ops | faults | violations | sim s | wall s | sim/wall |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut total = CampaignRow::new("");
    for row in rows {
        markdown_row(&mut out, &row.scenario.replace('|', "\\|"), row);
        total.seeds += row.seeds;
        total.ops += row.ops;
        total.faults += row.faults;
        total.violations += row.violations;
        total.sim_secs += row.sim_secs;
        total.wall_secs += row.wall_secs;
    }
    markdown_row(&mut out, "**total**", &total);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Recorder;

    fn ok_put() -> Outcome {
        Outcome::Ok(Response::Put { revision: 2 })
    }

    /// A history of `count` sequential 1 ms puts spread round-robin over `clients` clients.
    fn history(count: u64, clients: u32) -> History {
        let recorder = Recorder::new();
        for i in 0..count {
            let request = Request::Put { key: "k00".to_string(), value: format!("v{i}") };
            let handle = recorder.invoke((i % u64::from(clients)) as u32, "m0", request, i * NS_PER_MS);
            recorder.complete(handle, ok_put(), i * NS_PER_MS + NS_PER_MS / 2);
        }
        recorder.finish(count * NS_PER_MS)
    }

    fn count(page: &str, needle: &str) -> usize {
        page.matches(needle).count()
    }

    #[test]
    fn html_escapes_markup_in_every_text() {
        let recorder = Recorder::new();
        let request = Request::Put { key: "k00".to_string(), value: "<script>&".to_string() };
        let handle = recorder.invoke(0, "<m&1>", request, 0);
        recorder.complete(handle, ok_put(), 10);
        recorder.fault("isolate <b>".to_string(), 2);
        let page = html(&recorder.finish(20), "t<itle>", "a < b && c", &[0]);
        assert!(!page.contains("<script>") && !page.contains("<b>") && !page.contains("<m&1>"));
        assert!(page.contains("put k00 = &lt;script&gt;&amp;"));
        assert!(page.contains("&lt;m&amp;1&gt;"));
        assert!(page.contains("<title>t&lt;itle&gt;</title>"));
        assert!(page.contains("a &lt; b &amp;&amp; c"));
    }

    #[test]
    fn html_draws_one_lane_per_client() {
        let page = html(&history(12, 3), "run", "", &[]);
        assert_eq!(count(&page, "<g class=\"lane\">"), 3);
        assert!(page.contains(">client 0<") && page.contains(">client 2<"));
    }

    #[test]
    fn html_colors_bars_by_outcome() {
        let recorder = Recorder::new();
        let outcomes = [ok_put(), Outcome::Fail { reason: "no leader".to_string() }];
        for (i, outcome) in outcomes.into_iter().enumerate() {
            let handle = recorder.invoke(0, "m0", Request::Get { key: "k00".to_string() }, i as u64 * 10);
            recorder.complete(handle, outcome, i as u64 * 10 + 5);
        }
        let _open = recorder.invoke(1, "m0", Request::Get { key: "k00".to_string() }, 30);
        let page = html(&recorder.finish(40), "run", "", &[]);
        assert_eq!(count(&page, "class=\"op ok\""), 1);
        assert_eq!(count(&page, "class=\"op fail\""), 1);
        assert_eq!(count(&page, "class=\"op info\""), 1);
    }

    #[test]
    fn html_emphasizes_and_tables_the_highlighted_ops() {
        let page = html(&history(6, 2), "run", "", &[1, 4]);
        assert!(page.contains("class=\"op ok hl\" data-op=\"1\""));
        assert!(page.contains("class=\"op ok hl\" data-op=\"4\""));
        assert_eq!(count(&page, " dim\""), 4);
        assert!(page.contains("<td>put k00 = v4</td>"));
        assert_eq!(count(&page, "<tr class="), 2);
    }

    #[test]
    fn html_overlays_faults_as_labeled_bands() {
        let recorder = Recorder::new();
        let healed = recorder.fault("kill -9 member 1".to_string(), 0);
        recorder.heal(healed, 5 * NS_PER_MS);
        recorder.fault("partition minority [2] from the rest".to_string(), NS_PER_MS);
        let page = html(&recorder.finish(10 * NS_PER_MS), "run", "", &[]);
        assert_eq!(count(&page, "<rect class=\"fault\""), 2);
        assert!(page.contains(">kill -9 member 1</text>"));
        assert!(page.contains(">partition minority [2] from the rest (not healed)</text>"));
        assert!(page.contains("<tr><td>0.000</td><td>5.000</td><td>kill -9 member 1</td></tr>"));
    }

    #[test]
    fn html_cuts_a_large_history_to_the_highlighted_window() {
        let history = history(20_000, 4);
        let page = html(&history, "run", "", &[10_000]);
        let drawn = count(&page, "data-op=");
        assert!(drawn <= RENDER_OPS_MAX && drawn > 1, "{drawn} ops drawn");
        assert!(page.contains("data-op=\"10000\"") && !page.contains("data-op=\"0\""));
        assert!(page.contains(&format!("Showing {drawn} of 20000 operations")));
        assert!(page.len() < 2_000_000, "{} bytes", page.len());
    }

    #[test]
    fn html_of_an_empty_history_is_a_complete_page() {
        let page = html(&History::default(), "empty", "", &[]);
        assert!(page.contains("</svg>") && page.ends_with("</html>\n"));
        assert!(page.contains("No operations highlighted."));
    }

    #[test]
    fn tick_steps_are_round_numbers() {
        assert_eq!(tick_step_ns(1_000 * NS_PER_MS), 100 * NS_PER_MS);
        assert_eq!(tick_step_ns(12_345), 2_000);
        assert_eq!(tick_step_ns(3), 1);
    }

    #[test]
    fn describe_request_prints_txn_guards_and_branches() {
        let txn = Request::Txn {
            compares: vec![crate::history::Compare {
                key: "k01".to_string(),
                op: CompareOp::Equal,
                target: CompareTarget::ModRevision(7),
            }],
            success: vec![TxnOp::Put { key: "k01".to_string(), value: "c1-2".to_string() }],
            failure: vec![TxnOp::Get { key: "k01".to_string() }],
        };
        assert_eq!(describe_request(&txn), "txn if k01 mod == 7 then put k01 = c1-2 else get k01");
    }

    #[test]
    fn describe_outcome_names_the_revision_and_the_value_seen() {
        let kv = KeyValue {
            key: "k01".to_string(),
            value: "c1-2".to_string(),
            create_revision: 3,
            mod_revision: 5,
            version: 2,
        };
        let outcome = Outcome::Ok(Response::Get { revision: 9, kv: Some(kv) });
        assert_eq!(describe_outcome(&outcome), "ok rev 9: k01 = c1-2 (mod 5)");
        let lost = Outcome::Indeterminate { reason: "timeout".to_string() };
        assert_eq!(describe_outcome(&lost), "indeterminate: timeout");
    }

    #[test]
    fn campaign_markdown_adds_totals_and_speed() {
        let row = |scenario: &str, violations, sim_secs, wall_secs| CampaignRow {
            scenario: scenario.to_string(),
            seeds: 10,
            ops: 1_000,
            faults: 20,
            violations,
            sim_secs,
            wall_secs,
        };
        let table = campaign_markdown(&[row("leader_kill_loop", 0, 300.0, 10.0), row("a|b", 1, 100.0, 0.0)]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 5);
        assert_eq!(lines[2], "| leader_kill_loop | 10 | 1000 | 20 | 0 | 300.0 | 10.0 | 30.0x |");
        assert_eq!(lines[3], "| a\\|b | 10 | 1000 | 20 | 1 | 100.0 | 0.0 | - |");
        assert_eq!(lines[4], "| **total** | 20 | 2000 | 40 | 1 | 400.0 | 10.0 | 40.0x |");
    }
}
