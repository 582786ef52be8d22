//! The status page at `/`: the [`StatusReport`] as one HTML document with no external asset
//! (air-gapped users), a plain table filtered, sorted and cut by the server (`page_query.rs`),
//! so it works without JavaScript; with scripts it asks the server again as one types or clicks
//! a heading, and every few seconds (`status.js`). And the routes: `/` the page, `/status` its
//! data as JSON.

use std::fmt::Write;
use std::time::{Duration, SystemTime};

use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};

use http::{Response, StatusCode};
use log::warn;

use super::page_query::{PageQuery, SortKey};
use super::status::{Counts, StatusReport, TargetStatus};
use super::{compressed, AdminApp};

impl AdminApp {
    /// `/status`: the report as JSON, gzip-compressed when asked.
    pub(super) fn status_json(&self, gzip: bool) -> Response<Vec<u8>> {
        let (report, _) = self.report("");
        match serde_json::to_vec(&report) {
            Ok(body) => compressed(StatusCode::OK, "application/json", body, gzip),
            Err(e) => {
                warn!("could not encode /status: {e}");
                super::text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "could not encode the status\n",
                )
            }
        }
    }

    /// `/`: the status page: the targets matching `?filter=`, sorted by `?sort=`, at most
    /// `?limit=` of them.
    pub(super) fn status_page(&self, query: Option<&str>, gzip: bool) -> Response<Vec<u8>> {
        let query = PageQuery::parse(query);
        let (mut report, counts) = self.report(&query.filter);
        query.sort(&mut report.targets);
        let matching = report.targets.len();
        if let Some(limit) = query.limit {
            report.targets.truncate(limit);
        }
        let page = render(&report, &query, counts, matching);
        compressed(
            StatusCode::OK,
            "text/html; charset=utf-8",
            page.into_bytes(),
            gzip,
        )
    }
}

const STYLE: &str = include_str!("status.css");
const SCRIPT: &str = include_str!("status.js");

/// Whether `target` matches the filter `needle` (lower-case): by name, source, address, state
/// or failure reason.
pub fn matches(target: &TargetStatus, needle: &str) -> bool {
    needle.is_empty()
        || [
            target.name.as_str(),
            target.source,
            target.address.as_str(),
            target.state.as_str(),
            target
                .last_failure
                .as_ref()
                .map_or("", |f| f.reason.as_str()),
        ]
        .iter()
        .any(|field| field.to_lowercase().contains(needle))
}

/// `report` as the HTML page asked for by `query`; `counts` of every target, `matching` of them
/// matched the filter (the report holds the first of those, up to the limit).
pub fn render(
    report: &StatusReport<'_>,
    query: &PageQuery,
    counts: Counts,
    matching: usize,
) -> String {
    let now = report.generated_at;
    let tunnel = &report.tunnel;
    let Counts { total, failing } = counts;
    let mut page = String::with_capacity(4096 + report.targets.len() * 512);
    // Writing to a String cannot fail: the results below are ignored for that reason.
    let _ = write!(
        page,
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>prometheus-tunnel status</title>
<style>{STYLE}</style></head>
<body>
<header><h1>prometheus-tunnel</h1>
<p id="summary"><span class="version">{version} ({commit})</span> · up {uptime} · <b id="total">{total}</b> targets, <b id="failing" class="{failing_class}">{failing}</b> failing · as of <time id="generated">{generated}</time></p></header>
"#,
        version = text(tunnel.version),
        commit = text(tunnel.git_commit),
        uptime = span(Duration::from_secs(tunnel.uptime_seconds)),
        failing_class = if failing > 0 { "bad" } else { "good" },
        generated = humantime::format_rfc3339_seconds(now),
    );
    targets_head(&mut page, query, report.targets.len(), matching);
    for target in &report.targets {
        row(&mut page, target, now);
    }
    page.push_str("</tbody></table></section>\n");
    tunnel_section(&mut page, report);
    let _ = write!(page, "<script>{SCRIPT}</script>\n</body></html>\n");
    page
}

/// The filter box, the count of rows shown and the table's headings, each a link that sorts by
/// its column (again for descending).
fn targets_head(page: &mut String, query: &PageQuery, shown: usize, matching: usize) {
    // The form submits the filter from its box, and the rest of the page's parameters as
    // they are.
    let kept: String = query
        .params()
        .into_iter()
        .filter(|(name, _)| *name != "filter")
        .map(|(name, value)| {
            format!(
                r#"<input type="hidden" name="{name}" value="{}">"#,
                attr(&value)
            )
        })
        .collect();
    let more = if shown < matching {
        format!(
            r#" of {matching} matching: <a id="show-all" href="{}">show all</a> or narrow the filter"#,
            attr(&query.unlimited())
        )
    } else {
        String::new()
    };
    let _ = write!(
        page,
        r#"<section id="targets"><h2>Targets</h2>
<form method="get" action="/" id="filter-form"><label for="filter">Filter</label>
<input type="search" id="filter" name="filter" value="{filter}" placeholder="name, address, state or failure reason" autocomplete="off">{kept}
<noscript><button type="submit">Apply</button></noscript>
<span class="shown" id="shown-line"><span id="shown">{shown}</span> shown{more}</span></form>
<table id="target-table"><thead><tr>
"#,
        filter = attr(&query.filter),
    );
    for (key, heading) in SortKey::COLUMNS {
        let aria = query
            .aria_sort(key)
            .map_or(String::new(), |s| format!(r#" aria-sort="{s}""#));
        let _ = write!(
            page,
            r#"<th scope="col" data-key="{key}"{aria}><a href="{href}">{heading}</a></th>"#,
            key = key.as_str(),
            href = attr(&query.sorted_by(key)),
        );
    }
    page.push_str("\n</tr></thead>\n<tbody id=\"target-rows\">\n");
}

/// One target's row.
fn row(page: &mut String, t: &TargetStatus, now: SystemTime) {
    let state = t.state.as_str();
    let _ = write!(
        page,
        r#"<tr class="{state}" data-name="{name_attr}"><td><span class="badge">{state}</span></td><td class="name">{name}</td><td class="address"><span class="source">{source}</span> {address}</td>"#,
        name_attr = attr(&t.name),
        name = text(&t.name),
        source = t.source,
        address = text(&t.address),
    );
    match &t.last_scrape {
        Some(last) => {
            let _ = write!(
                page,
                r#"<td title="{stamp}">{ago}</td><td>{status}</td><td>{duration}</td><td>{size}</td>"#,
                stamp = humantime::format_rfc3339_millis(last.at),
                ago = ago(now, last.at),
                status = last.status,
                duration = duration(last.duration_seconds),
                size = size(last.bytes),
            );
        }
        None => page.push_str("<td>never</td><td></td><td></td><td></td>"),
    }
    match &t.last_failure {
        Some(failure) => {
            let _ = write!(
                page,
                r#"<td class="failure"><span class="reason">{reason}</span> <span class="when" title="{stamp}">{status}, {ago}</span></td>"#,
                reason = text(&failure.reason),
                stamp = humantime::format_rfc3339_millis(failure.at),
                status = failure.status,
                ago = ago(now, failure.at),
            );
        }
        None => page.push_str(r#"<td class="failure"></td>"#),
    }
    let _ = writeln!(
        page,
        "<td>{s}</td><td>{f}</td></tr>",
        s = t.scrapes_5m,
        f = t.failures_5m,
    );
}

/// The tunnel's own section: its state, the last reload and the settings in force.
fn tunnel_section(page: &mut String, report: &StatusReport<'_>) {
    let tunnel = &report.tunnel;
    let set = tunnel
        .settings
        .iter()
        .filter(|s| s.origin != "default")
        .count();
    let reload = match &tunnel.last_reload {
        None => "none since the start".to_string(),
        Some(r) => format!(
            r#"<span class="{class}">{outcome}</span> ({trigger}, {ago}): {detail}"#,
            class = if r.applied { "good" } else { "bad" },
            outcome = if r.applied { "applied" } else { "refused" },
            trigger = text(r.trigger),
            ago = ago(report.generated_at, r.at),
            detail = text(&r.detail),
        ),
    };
    let _ = write!(
        page,
        r#"<section id="tunnel"><h2>Tunnel</h2><dl>
<dt>Version</dt><dd>{version}, commit {commit}, built {built}</dd>
<dt>Started</dt><dd>{started} (up {uptime})</dd>
<dt>Open client connections</dt><dd id="open-connections">{open}</dd>
<dt>Scrapes in flight</dt><dd id="in-flight">{in_flight}</dd>
<dt>Resident memory</dt><dd id="memory">{memory}</dd>
<dt>Last reload</dt><dd id="last-reload">{reload}</dd>
</dl>
<details id="settings-block"><summary>Settings in force: {set} set, {defaults} at their default</summary><table id="settings"><thead><tr><th scope="col">Setting</th><th scope="col">Value</th><th scope="col">From</th></tr></thead><tbody>
"#,
        version = text(tunnel.version),
        commit = text(tunnel.git_commit),
        built = text(tunnel.build_time),
        started = humantime::format_rfc3339_seconds(tunnel.started_at),
        uptime = span(Duration::from_secs(tunnel.uptime_seconds)),
        open = tunnel.open_connections,
        in_flight = tunnel.in_flight_scrapes,
        memory = tunnel
            .resident_memory_bytes
            .map_or_else(|| "unknown".to_string(), size),
        set = set,
        defaults = tunnel.settings.len() - set,
    );
    for setting in &tunnel.settings {
        let _ = writeln!(
            page,
            r#"<tr class="{class}"><td>{name}</td><td>{value}</td><td>{origin}</td></tr>"#,
            class = if setting.origin == "default" {
                "default"
            } else {
                "set"
            },
            name = setting.name,
            value = text(setting.value),
            origin = text(setting.origin),
        );
    }
    page.push_str("</tbody></table></details></section>\n");
}

/// `at` as a time before `now`: `4s ago`, `3m ago`.
fn ago(now: SystemTime, at: SystemTime) -> String {
    let since = now.duration_since(at).unwrap_or_default();
    format!("{} ago", span(since))
}

/// A coarse span: `4s`, `3m 20s`, `2h 5m`, `3d 4h`.
fn span(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

/// A duration in seconds, in the unit that reads best.
fn duration(seconds: f64) -> String {
    if seconds < 1.0 {
        format!("{:.1} ms", seconds * 1000.0)
    } else {
        format!("{seconds:.2} s")
    }
}

/// A byte count in the unit that reads best (powers of 1000).
fn size(bytes: u64) -> String {
    match bytes {
        0..1000 => format!("{bytes} B"),
        1000..1_000_000 => format!("{:.1} kB", bytes as f64 / 1e3),
        _ => format!("{:.1} MB", bytes as f64 / 1e6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readable_units() {
        assert_eq!(span(Duration::from_secs(4)), "4s");
        assert_eq!(span(Duration::from_secs(200)), "3m 20s");
        assert_eq!(span(Duration::from_secs(7500)), "2h 5m");
        assert_eq!(duration(0.0123), "12.3 ms");
        assert_eq!(duration(2.5), "2.50 s");
        assert_eq!(size(512), "512 B");
        assert_eq!(size(59_100), "59.1 kB");
        assert_eq!(size(5_000_000), "5.0 MB");
    }
}
