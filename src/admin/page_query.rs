//! What the status page was asked for: `?filter=` (text to look for), `?sort=` (a column, `-`
//! first for descending) and `?limit=` (rows at most, or `all`). The server filters, sorts and
//! cuts, so the page works the same with and without scripts, and a browser lays out only the
//! rows shown: a table of 10,000 rows takes seconds to lay out, one of 1,000 a fraction of one.

use std::cmp::Ordering;

use super::status::{LastScrape, TargetStatus};

/// Rows shown unless `?limit=` says otherwise.
pub const DEFAULT_LIMIT: usize = 1000;

/// A column the page sorts by, as `?sort=` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// Failing, unscraped, ok.
    State,
    /// The target's name.
    Name,
    /// How it is reached.
    Address,
    /// When its last scrape ended.
    Last,
    /// Its last status.
    Status,
    /// Its last duration.
    Duration,
    /// Its last size.
    Size,
    /// When it last failed.
    Failure,
    /// Scrapes over 5 minutes.
    Scrapes,
    /// Failures over 5 minutes.
    Failures,
}

impl SortKey {
    /// Every column, in the page's order, with its heading.
    pub const COLUMNS: [(SortKey, &'static str); 10] = [
        (SortKey::State, "State"),
        (SortKey::Name, "Target"),
        (SortKey::Address, "Address"),
        (SortKey::Last, "Last scrape"),
        (SortKey::Status, "Status"),
        (SortKey::Duration, "Duration"),
        (SortKey::Size, "Size"),
        (SortKey::Failure, "Last failure"),
        (SortKey::Scrapes, "Scrapes 5m"),
        (SortKey::Failures, "Failures 5m"),
    ];

    /// The name `?sort=` gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            SortKey::State => "state",
            SortKey::Name => "name",
            SortKey::Address => "address",
            SortKey::Last => "last",
            SortKey::Status => "status",
            SortKey::Duration => "duration",
            SortKey::Size => "size",
            SortKey::Failure => "failure",
            SortKey::Scrapes => "scrapes",
            SortKey::Failures => "failures",
        }
    }

    fn from_str(text: &str) -> Option<SortKey> {
        Self::COLUMNS
            .iter()
            .map(|(key, _)| *key)
            .find(|key| key.as_str() == text)
    }

    /// `a` against `b` by this column; equal ones keep their order (failing first, by name).
    fn compare(self, a: &TargetStatus, b: &TargetStatus) -> Ordering {
        let last = |t: &TargetStatus| t.last_scrape.as_ref().map(|l| l.at);
        let scrape =
            |t: &TargetStatus, f: fn(&LastScrape) -> f64| t.last_scrape.as_ref().map_or(-1.0, f);
        match self {
            SortKey::State => a.state.cmp(&b.state),
            SortKey::Name => a.name.cmp(&b.name),
            SortKey::Address => a.address.cmp(&b.address),
            SortKey::Last => last(a).cmp(&last(b)),
            SortKey::Status => {
                scrape(a, |l| f64::from(l.status)).total_cmp(&scrape(b, |l| f64::from(l.status)))
            }
            SortKey::Duration => {
                scrape(a, |l| l.duration_seconds).total_cmp(&scrape(b, |l| l.duration_seconds))
            }
            SortKey::Size => {
                scrape(a, |l| l.bytes as f64).total_cmp(&scrape(b, |l| l.bytes as f64))
            }
            SortKey::Failure => {
                let at = |t: &TargetStatus| t.last_failure.as_ref().map(|f| f.at);
                at(a).cmp(&at(b))
            }
            SortKey::Scrapes => a.scrapes_5m.cmp(&b.scrapes_5m),
            SortKey::Failures => a.failures_5m.cmp(&b.failures_5m),
        }
    }
}

/// The page's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageQuery {
    /// Text to look for (lower-case, trimmed); empty for every target.
    pub filter: String,
    /// The column sorted by and whether descending; `None` for the default order.
    pub sort: Option<(SortKey, bool)>,
    /// Rows shown at most; `None` for all.
    pub limit: Option<usize>,
}

impl PageQuery {
    /// The parameters of the query string `query`; what is not understood is left at its
    /// default (the page is for reading: it refuses nothing).
    pub fn parse(query: Option<&str>) -> PageQuery {
        let mut page = PageQuery {
            filter: String::new(),
            sort: None,
            limit: Some(DEFAULT_LIMIT),
        };
        let pairs = query
            .into_iter()
            .flat_map(|q| url::form_urlencoded::parse(q.as_bytes()));
        for (key, value) in pairs {
            match &*key {
                "filter" => page.filter = value.trim().to_lowercase(),
                "sort" => {
                    let descending = value.starts_with('-');
                    page.sort = SortKey::from_str(value.trim_start_matches('-'))
                        .map(|key| (key, descending));
                }
                "limit" if value == "all" => page.limit = None,
                "limit" => {
                    if let Ok(n) = value.parse::<usize>() {
                        page.limit = Some(n.max(1));
                    }
                }
                _ => {}
            }
        }
        page
    }

    /// Sorts `targets` (already in the default order) by the chosen column, if any.
    pub fn sort(&self, targets: &mut [TargetStatus]) {
        if let Some((key, descending)) = self.sort {
            targets.sort_by(|a, b| {
                let order = key.compare(a, b);
                if descending {
                    order.reverse()
                } else {
                    order
                }
            });
        }
    }

    /// The query string of this page sorted by `key` (descending if it is sorted ascending by
    /// it now), keeping the filter and the limit.
    pub fn sorted_by(&self, key: SortKey) -> String {
        let descending = self.sort == Some((key, false));
        let mut next = self.clone();
        next.sort = Some((key, descending));
        next.to_query()
    }

    /// The page with no limit.
    pub fn unlimited(&self) -> String {
        let mut next = self.clone();
        next.limit = None;
        next.to_query()
    }

    /// The parameters that differ from the defaults, as `(name, value)` in the order
    /// filter, sort, limit: the query string's, and the filter form's hidden fields.
    pub fn params(&self) -> Vec<(&'static str, String)> {
        let mut params = Vec::with_capacity(3);
        if !self.filter.is_empty() {
            params.push(("filter", self.filter.clone()));
        }
        if let Some((key, descending)) = self.sort {
            let sign = if descending { "-" } else { "" };
            params.push(("sort", format!("{sign}{}", key.as_str())));
        }
        match self.limit {
            Some(DEFAULT_LIMIT) => {}
            Some(n) => params.push(("limit", n.to_string())),
            None => params.push(("limit", "all".to_string())),
        }
        params
    }

    /// `?filter=...&sort=...&limit=...`, what differs from the defaults.
    pub fn to_query(&self) -> String {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(self.params())
            .finish();
        format!("?{query}")
    }

    /// The `aria-sort` of `key`'s heading.
    pub fn aria_sort(&self, key: SortKey) -> Option<&'static str> {
        match self.sort {
            Some((sorted, false)) if sorted == key => Some("ascending"),
            Some((sorted, true)) if sorted == key => Some("descending"),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_parse_with_defaults_for_the_rest() {
        let page = PageQuery::parse(Some("filter=+DB-01+&sort=-duration&limit=50&x=1"));
        assert_eq!(page.filter, "db-01");
        assert_eq!(page.sort, Some((SortKey::Duration, true)));
        assert_eq!(page.limit, Some(50));
        let default = PageQuery::parse(None);
        assert_eq!(default.limit, Some(DEFAULT_LIMIT));
        assert_eq!(default.sort, None);
        assert_eq!(PageQuery::parse(Some("limit=all")).limit, None);
        assert_eq!(PageQuery::parse(Some("sort=nonsense&limit=x")), default);
    }

    #[test]
    fn a_heading_sorts_ascending_then_descending_keeping_the_rest() {
        let page = PageQuery::parse(Some("filter=db&limit=all"));
        assert_eq!(
            page.sorted_by(SortKey::Name),
            "?filter=db&sort=name&limit=all"
        );
        let sorted = PageQuery::parse(Some("filter=db&sort=name"));
        assert_eq!(sorted.sorted_by(SortKey::Name), "?filter=db&sort=-name");
        assert_eq!(sorted.aria_sort(SortKey::Name), Some("ascending"));
        assert_eq!(sorted.aria_sort(SortKey::Size), None);
        assert_eq!(sorted.unlimited(), "?filter=db&sort=name&limit=all");
    }
}
