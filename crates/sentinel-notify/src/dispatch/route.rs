//! The routing tree built from `route:`: which routes (and so receivers and grouping
//! options) an alert goes to. Alertmanager's `Route.Match`: children in order, the
//! first match wins unless it has `continue`, and a node whose children all miss
//! takes the alert itself.

use super::matcher::{self, Matcher};
use crate::config::RouteConfig;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub enum GroupBy {
    /// `['...']`: every label.
    All,
    Labels(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct Route {
    /// Position in a pre-order walk; tells apart routes with the same key.
    pub id: usize,
    /// Alertmanager's route key (`{}/{severity="critical"}`), part of the group key.
    pub key: String,
    pub matchers: Vec<Matcher>,
    pub receiver: String,
    pub group_by: GroupBy,
    pub group_wait: Duration,
    pub group_interval: Duration,
    pub repeat_interval: Duration,
    pub continue_: bool,
    pub children: Vec<Route>,
}

impl Route {
    /// Builds the tree; the config must have been validated.
    pub fn build(cfg: &RouteConfig) -> Route {
        let root_defaults = Route {
            id: 0,
            key: String::new(),
            matchers: Vec::new(),
            receiver: String::new(),
            group_by: GroupBy::Labels(Vec::new()),
            group_wait: Duration::from_secs(10),
            group_interval: Duration::from_secs(60),
            repeat_interval: Duration::from_secs(4 * 3600),
            continue_: false,
            children: Vec::new(),
        };
        let mut next_id = 0;
        build(cfg, &root_defaults, true, &mut next_id)
    }

    /// The routes that take an alert with these labels.
    pub fn matching(&self, labels: &BTreeMap<String, String>) -> Vec<&Route> {
        let mut out = Vec::new();
        self.match_into(labels, &mut out);
        out
    }

    fn match_into<'a>(
        &'a self,
        labels: &BTreeMap<String, String>,
        out: &mut Vec<&'a Route>,
    ) -> bool {
        if !matcher::matches_all(&self.matchers, labels) {
            return false;
        }
        let before = out.len();
        for c in &self.children {
            if c.match_into(labels, out) && !c.continue_ {
                break;
            }
        }
        if out.len() == before {
            out.push(self);
        }
        true
    }

    /// The labels an alert is grouped by on this route.
    pub fn group_labels(&self, labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        match &self.group_by {
            GroupBy::All => labels.clone(),
            GroupBy::Labels(names) => names
                .iter()
                .filter_map(|n| labels.get(n).map(|v| (n.clone(), v.clone())))
                .collect(),
        }
    }

    pub fn walk(&self, f: &mut impl FnMut(&Route)) {
        f(self);
        for c in &self.children {
            c.walk(f);
        }
    }
}

fn build(cfg: &RouteConfig, parent: &Route, is_root: bool, next_id: &mut usize) -> Route {
    let id = *next_id;
    *next_id += 1;
    let mut matchers = if is_root {
        Vec::new()
    } else {
        matcher::parse_list(&cfg.matchers).unwrap_or_default()
    };
    // Alertmanager sorts a route's matchers (name, value, type) before they enter the
    // route key, so group keys match its own.
    matchers.sort_by(|a, b| (&a.name, &a.value, a.op as u8).cmp(&(&b.name, &b.value, b.op as u8)));
    let key = if is_root {
        matcher::list_string(&matchers)
    } else {
        format!("{}/{}", parent.key, matcher::list_string(&matchers))
    };
    let mut r = Route {
        id,
        key,
        matchers,
        receiver: cfg
            .receiver
            .clone()
            .unwrap_or_else(|| parent.receiver.clone()),
        group_by: match &cfg.group_by {
            None => parent.group_by.clone(),
            Some(g) if g.iter().any(|l| l == "...") => GroupBy::All,
            Some(g) => GroupBy::Labels(g.clone()),
        },
        group_wait: cfg.group_wait.map(|d| d.get()).unwrap_or(parent.group_wait),
        group_interval: cfg
            .group_interval
            .map(|d| d.get())
            .unwrap_or(parent.group_interval),
        repeat_interval: cfg
            .repeat_interval
            .map(|d| d.get())
            .unwrap_or(parent.repeat_interval),
        continue_: cfg.continue_,
        children: Vec::new(),
    };
    let children = cfg
        .routes
        .iter()
        .map(|c| build(c, &r, false, next_id))
        .collect();
    r.children = children;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(p: &[(&str, &str)]) -> BTreeMap<String, String> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn continue_and_fallthrough() {
        let cfg: RouteConfig = serde_yaml_ng::from_str(
            r#"
receiver: default
group_by: [alertname]
routes:
  - matchers: ['severity="critical"']
    receiver: pager
    continue: true
  - matchers: ['team="gpu"']
    receiver: gpu
    group_by: ['...']
  - matchers: ['team=~"gpu|ml"']
    receiver: never-reached-for-gpu
"#,
        )
        .unwrap();
        let r = Route::build(&cfg);
        let recv = |l: &[(&str, &str)]| -> Vec<String> {
            r.matching(&labels(l))
                .iter()
                .map(|x| x.receiver.clone())
                .collect()
        };
        assert_eq!(
            recv(&[("severity", "critical"), ("team", "gpu")]),
            ["pager", "gpu"]
        );
        assert_eq!(recv(&[("team", "gpu")]), ["gpu"]);
        assert_eq!(recv(&[("team", "ml")]), ["never-reached-for-gpu"]);
        assert_eq!(recv(&[("team", "web")]), ["default"]);
        assert_eq!(r.children[0].key, "{}/{severity=\"critical\"}");
        let two: RouteConfig =
            serde_yaml_ng::from_str("routes: [{matchers: ['team=\"gpu\"', 'env!=\"dev\"']}]")
                .unwrap();
        assert_eq!(
            Route::build(&two).children[0].key,
            "{}/{env!=\"dev\",team=\"gpu\"}"
        );
        assert_eq!(r.children[1].group_by, GroupBy::All);
        assert_eq!(
            r.children[0].group_by,
            GroupBy::Labels(vec!["alertname".into()])
        );
    }
}
