//! Typed, pure parsing of ComfyUI's HTTP answers (`/system_stats`, `/queue`, `/history`),
//! as served by ComfyUI 0.3.64 (`server.py`, `execution.py`) and recorded in
//! `tests/fixtures/comfyui/`. No I/O here: `mod.rs` fetches, `history.rs` decides what is
//! new. Every field is optional or defaulted so that an older or newer ComfyUI that drops
//! or adds a field still parses; only the shape we cannot do without is an error.
//!
//! History pages are parsed in two steps so that polling stays incremental: the page is
//! split into borrowed raw entries, each entry's `status` is read to build its key, and
//! only entries not seen before have their graph and outputs parsed.

use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;

/// Why a body could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("invalid json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("body is not utf-8")]
    Utf8,
    #[error("body is not a JSON object")]
    NotAnObject,
}

/// `GET /system_stats`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct SystemStats {
    #[serde(default)]
    pub system: SystemInfo,
    #[serde(default)]
    pub devices: Vec<Device>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct SystemInfo {
    pub ram_total: Option<f64>,
    pub ram_free: Option<f64>,
    pub comfyui_version: Option<String>,
    pub python_version: Option<String>,
    pub pytorch_version: Option<String>,
}

/// One torch device (ComfyUI lists only the one it uses).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Device {
    #[serde(default)]
    pub name: String,
    #[serde(default, rename = "type")]
    pub kind: String,
    pub index: Option<i64>,
    pub vram_total: Option<f64>,
    pub vram_free: Option<f64>,
    pub torch_vram_total: Option<f64>,
    pub torch_vram_free: Option<f64>,
}

pub fn parse_system_stats(body: &[u8]) -> Result<SystemStats, ParseError> {
    require_object(body)?;
    Ok(serde_json::from_slice(body)?)
}

/// `GET /queue`, reduced to what may be exported: the item counts. Item bodies carry
/// unstripped `extra_data` (API keys), so they are skipped unread and never kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounts {
    pub running: usize,
    pub pending: usize,
}

pub fn parse_queue(body: &[u8]) -> Result<QueueCounts, ParseError> {
    #[derive(Deserialize)]
    struct Raw {
        #[serde(default)]
        queue_running: Vec<IgnoredAny>,
        #[serde(default)]
        queue_pending: Vec<IgnoredAny>,
    }
    require_object(body)?;
    let raw: Raw = serde_json::from_slice(body)?;
    Ok(QueueCounts {
        running: raw.queue_running.len(),
        pending: raw.queue_pending.len(),
    })
}

/// serde would also build these structs from a JSON array; ComfyUI only sends objects.
fn require_object(body: &[u8]) -> Result<(), ParseError> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => Ok(()),
        _ => Err(ParseError::NotAnObject),
    }
}

/// How a prompt ended, from its terminal message (`status_str` says `error` for an
/// interrupted prompt too, so it is not used).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    Success,
    Error,
    Interrupted,
}

impl Outcome {
    pub const ALL: [Outcome; 3] = [Outcome::Success, Outcome::Error, Outcome::Interrupted];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Error => "error",
            Outcome::Interrupted => "interrupted",
        }
    }
}

/// A message's `data`: the union of the fields the events we read carry. Unknown
/// fields (traceback, current_inputs, ...) are skipped without being kept.
#[derive(Debug, Default, Deserialize)]
struct MessageData {
    timestamp: Option<f64>,
    nodes: Option<Vec<String>>,
    node_id: Option<String>,
    node_type: Option<String>,
    executed: Option<Vec<String>>,
    exception_type: Option<String>,
    exception_message: Option<String>,
}

/// A `[event, data]` pair; a pair of another shape is kept as an unknown event.
struct Message {
    event: String,
    data: MessageData,
}

impl<'de> Deserialize<'de> for Message {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (event, data): (String, Option<MessageData>) = Deserialize::deserialize(d)?;
        Ok(Message {
            event,
            data: data.unwrap_or_default(),
        })
    }
}

#[derive(Deserialize)]
struct RawStatus {
    #[serde(default)]
    messages: Vec<Message>,
}

/// The first step of an entry: its status, with the rest kept raw.
#[derive(Deserialize)]
struct RawEntry<'a> {
    #[serde(borrow)]
    prompt: Option<&'a RawValue>,
    #[serde(borrow)]
    outputs: Option<&'a RawValue>,
    status: Option<RawStatus>,
}

/// The terminal facts of one history entry, enough to key it and count it.
#[derive(Debug, Clone, PartialEq)]
pub struct Terminal {
    pub outcome: Outcome,
    /// Unix milliseconds of the terminal message.
    pub timestamp_ms: i64,
    /// Terminal − `execution_start` timestamp, when both are there.
    pub duration_ms: Option<i64>,
    /// Nodes `execution_cached` listed.
    pub cached: Vec<String>,
    /// Nodes that finished, as listed by an error or interrupt message.
    pub executed: Option<Vec<String>>,
    /// For errors: the node's class and the exception.
    pub node_type: Option<String>,
    pub node_id: Option<String>,
    pub exception_type: Option<String>,
    pub exception_message: Option<String>,
}

/// One history entry after the first step.
pub struct EntryHead<'a> {
    pub prompt_id: String,
    /// `None` when the entry has no terminal message (it cannot be classified).
    pub terminal: Option<Terminal>,
    prompt: Option<&'a RawValue>,
    outputs: Option<&'a RawValue>,
}

/// A history page: entries in the server's order (completion order, oldest first),
/// plus how many entries could not be read at all.
pub struct HistoryPage<'a> {
    pub entries: Vec<EntryHead<'a>>,
    pub bad_entries: usize,
}

/// Splits a `/history` body into entries without parsing graphs or outputs. A body
/// that is not a JSON object is an error; an entry of the wrong shape is counted in
/// `bad_entries` and the rest of the page is still used.
pub fn parse_history_page(body: &[u8]) -> Result<HistoryPage<'_>, ParseError> {
    let text = std::str::from_utf8(body).map_err(|_| ParseError::Utf8)?;
    let ordered: Ordered<'_> = serde_json::from_str(text)?;
    let mut entries = Vec::with_capacity(ordered.0.len());
    let mut bad_entries = 0;
    for (prompt_id, raw) in ordered.0 {
        match serde_json::from_str::<RawEntry<'_>>(raw.get()) {
            Ok(e) => entries.push(EntryHead {
                terminal: e.status.and_then(|s| terminal_of(s.messages)),
                prompt_id,
                prompt: e.prompt,
                outputs: e.outputs,
            }),
            // Kept without a terminal so it is keyed, counted once as a parse error
            // and not again on every poll.
            Err(_) => {
                bad_entries += 1;
                entries.push(EntryHead {
                    prompt_id,
                    terminal: None,
                    prompt: None,
                    outputs: None,
                });
            }
        }
    }
    Ok(HistoryPage {
        entries,
        bad_entries,
    })
}

fn terminal_of(messages: Vec<Message>) -> Option<Terminal> {
    let mut start = None;
    let mut cached = Vec::new();
    let mut terminal = None;
    for m in messages {
        match m.event.as_str() {
            "execution_start" => start = m.data.timestamp,
            "execution_cached" => cached = m.data.nodes.unwrap_or_default(),
            "execution_success" => terminal = Some((Outcome::Success, m.data)),
            "execution_error" => terminal = Some((Outcome::Error, m.data)),
            "execution_interrupted" => terminal = Some((Outcome::Interrupted, m.data)),
            _ => {}
        }
    }
    let (outcome, data) = terminal?;
    let ts = data.timestamp?;
    Some(Terminal {
        outcome,
        timestamp_ms: ts as i64,
        duration_ms: start.map(|s| (ts - s).max(0.0) as i64),
        cached,
        executed: data.executed,
        node_type: data.node_type,
        node_id: data.node_id,
        exception_type: data.exception_type,
        exception_message: data.exception_message,
    })
}

/// The second step, for new entries only.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EntryDetail {
    /// Nodes the prompt needed for its outputs (`prompt[4]` and their inputs,
    /// transitively), when the graph could be read.
    pub needed_nodes: Option<BTreeSet<String>>,
    /// Output images per output node id, in document order: the newest `keep_images`
    /// of [`EntryHead::detail_bounded`] (all of them for [`EntryHead::detail`]).
    pub images: Vec<(String, ImageRef)>,
    /// Every image listed by the nodes not skipped, `images` included.
    pub image_total: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ImageRef {
    #[serde(default)]
    pub filename: String,
    #[serde(default)]
    pub subfolder: String,
    #[serde(default, rename = "type")]
    pub kind: String,
}

#[derive(Deserialize)]
struct GraphNode {
    #[serde(default)]
    inputs: HashMap<String, InputValue>,
}

/// An input is a link `[node_id, output_index]` or a literal we do not need.
enum InputValue {
    Link(String),
    Literal,
}

impl<'de> Deserialize<'de> for InputValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = InputValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an input value")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<InputValue, A::Error> {
                // A link is exactly [string, number]; anything else is a literal list.
                let first: Option<LinkHead> = seq.next_element()?;
                let second: Option<LinkTail> = match first {
                    Some(_) => seq.next_element()?,
                    None => None,
                };
                let mut extra = false;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    extra = true;
                }
                match (first, second, extra) {
                    (Some(LinkHead(Some(id))), Some(LinkTail(true)), false) => {
                        Ok(InputValue::Link(id))
                    }
                    _ => Ok(InputValue::Literal),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<InputValue, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(InputValue::Literal)
            }
            fn visit_str<E>(self, _: &str) -> Result<InputValue, E> {
                Ok(InputValue::Literal)
            }
            fn visit_bool<E>(self, _: bool) -> Result<InputValue, E> {
                Ok(InputValue::Literal)
            }
            fn visit_i64<E>(self, _: i64) -> Result<InputValue, E> {
                Ok(InputValue::Literal)
            }
            fn visit_u64<E>(self, _: u64) -> Result<InputValue, E> {
                Ok(InputValue::Literal)
            }
            fn visit_f64<E>(self, _: f64) -> Result<InputValue, E> {
                Ok(InputValue::Literal)
            }
            fn visit_unit<E>(self) -> Result<InputValue, E> {
                Ok(InputValue::Literal)
            }
        }
        d.deserialize_any(V)
    }
}

/// First element of a possible link: the node id if it is a string.
struct LinkHead(Option<String>);
impl<'de> Deserialize<'de> for LinkHead {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        Ok(LinkHead(match v {
            serde_json::Value::String(s) => Some(s),
            _ => None,
        }))
    }
}

/// Second element of a possible link: true if it is a number.
struct LinkTail(bool);
impl<'de> Deserialize<'de> for LinkTail {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        Ok(LinkTail(v.is_number()))
    }
}

/// A node's output with its `images` list left raw: a node can list hundreds of
/// thousands of images (a batch run, a hostile server), so they are walked one by one
/// rather than collected.
#[derive(Deserialize)]
struct NodeOutput<'a> {
    #[serde(borrow)]
    images: Option<&'a RawValue>,
}

/// One image as listed, borrowing from the body unless it had escapes.
#[derive(Deserialize)]
struct ImageRefBorrowed<'a> {
    #[serde(borrow, default)]
    filename: Cow<'a, str>,
    #[serde(borrow, default)]
    subfolder: Cow<'a, str>,
    #[serde(borrow, default, rename = "type")]
    kind: Cow<'a, str>,
}

/// Walks a node's `images` array: counts every image and keeps only the newest
/// `keep`, so memory stays bounded whatever the length of the list. Fails (and the
/// node's images are left out, as before) when an element is not an image object.
struct ImageWalk<'k> {
    keep: usize,
    kept: &'k mut VecDeque<ImageRef>,
    total: &'k mut usize,
}

impl<'de, 'k> Visitor<'de> for ImageWalk<'k> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of images")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(i) = seq.next_element::<ImageRefBorrowed<'de>>()? {
            *self.total += 1;
            if self.keep == 0 {
                continue;
            }
            if self.kept.len() == self.keep {
                self.kept.pop_front();
            }
            self.kept.push_back(ImageRef {
                filename: i.filename.into_owned(),
                subfolder: i.subfolder.into_owned(),
                kind: i.kind.into_owned(),
            });
        }
        Ok(())
    }
}

/// The images of one node's output, bounded as [`ImageWalk`]; `None` when it does
/// not parse.
fn node_images(raw: &str, keep: usize) -> Option<(VecDeque<ImageRef>, usize)> {
    let node: NodeOutput<'_> = serde_json::from_str(raw).ok()?;
    let Some(images) = node.images else {
        return Some((VecDeque::new(), 0));
    };
    let (mut kept, mut total) = (VecDeque::new(), 0);
    let mut de = serde_json::Deserializer::from_str(images.get());
    serde::Deserializer::deserialize_seq(
        &mut de,
        ImageWalk {
            keep,
            kept: &mut kept,
            total: &mut total,
        },
    )
    .ok()?;
    Some((kept, total))
}

impl EntryHead<'_> {
    /// Parses the graph and outputs; a part that does not parse is left out.
    pub fn detail(&self) -> EntryDetail {
        self.detail_bounded(usize::MAX, &[])
    }

    /// Like [`detail`](Self::detail), but leaves out the images of `skip_nodes` and
    /// keeps only the newest `keep_images` of the rest (every one is still counted in
    /// `image_total`): memory stays bounded by `keep_images`, not by the size of the
    /// outputs listed.
    pub fn detail_bounded(&self, keep_images: usize, skip_nodes: &[String]) -> EntryDetail {
        let mut out = EntryDetail::default();
        if let Some(p) = self.prompt {
            out.needed_nodes = needed_nodes(p.get());
        }
        let Some(o) = self.outputs else {
            return out;
        };
        let Ok(map) = serde_json::from_str::<Ordered<'_>>(o.get()) else {
            return out;
        };
        let mut kept: VecDeque<(String, ImageRef)> = VecDeque::new();
        for (node, raw) in map.0 {
            if skip_nodes.contains(&node) {
                continue;
            }
            let Some((images, total)) = node_images(raw.get(), keep_images) else {
                continue;
            };
            out.image_total += total;
            for i in images {
                if kept.len() == keep_images {
                    kept.pop_front();
                }
                kept.push_back((node.clone(), i));
            }
        }
        out.images = kept.into();
        out
    }
}

/// `prompt` = `[number, id, graph, extra_data, outputs_to_execute]`: the nodes reachable
/// from the outputs to execute through input links.
fn needed_nodes(prompt: &str) -> Option<BTreeSet<String>> {
    let parts: Vec<&RawValue> = serde_json::from_str(prompt).ok()?;
    let graph: HashMap<String, GraphNode> = serde_json::from_str(parts.get(2)?.get()).ok()?;
    let outputs: Vec<String> = serde_json::from_str(parts.get(4)?.get()).ok()?;
    let mut seen = BTreeSet::new();
    let mut stack = outputs;
    while let Some(id) = stack.pop() {
        let Some(node) = graph.get(&id) else { continue };
        if !seen.insert(id) {
            continue;
        }
        for v in node.inputs.values() {
            if let InputValue::Link(src) = v {
                if !seen.contains(src) {
                    stack.push(src.clone());
                }
            }
        }
    }
    Some(seen)
}

/// A JSON object read as a list of (key, raw value) in document order.
struct Ordered<'a>(Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Ordered<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Ordered<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered<'a>, A::Error> {
                let mut v = Vec::new();
                while let Some((k, raw)) = map.next_entry::<String, &'de RawValue>()? {
                    v.push((k, raw));
                }
                Ok(Ordered(v))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/comfyui")
            .join(name);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    fn one(name: &str) -> (String, Terminal, EntryDetail) {
        let body = fixture(name);
        let page = parse_history_page(&body).unwrap();
        assert_eq!(page.entries.len(), 1, "{name}");
        assert_eq!(page.bad_entries, 0);
        let e = &page.entries[0];
        (e.prompt_id.clone(), e.terminal.clone().unwrap(), e.detail())
    }

    #[test]
    fn system_stats_cpu() {
        for f in ["get_system_stats.json", "get_api_system_stats.json"] {
            let s = parse_system_stats(&fixture(f)).unwrap();
            assert_eq!(s.system.comfyui_version.as_deref(), Some("0.3.64"));
            assert_eq!(s.system.pytorch_version.as_deref(), Some("2.15.0+cu132"));
            assert_eq!(s.system.ram_total, Some(25276510208.0));
            assert_eq!(s.devices.len(), 1);
            let d = &s.devices[0];
            assert_eq!(
                (d.name.as_str(), d.kind.as_str(), d.index),
                ("cpu", "cpu", None)
            );
            assert_eq!(d.torch_vram_free, Some(24181374976.0));
        }
    }

    #[test]
    fn queue_counts_every_fixture() {
        // (file, running, pending)
        let cases = [
            ("get_queue_empty.json", 0, 0),
            ("get_queue_running_and_pending.json", 1, 4),
            ("get_queue_running_sensitive_extra_data.json", 1, 0),
            ("get_queue_idle_after_runs.json", 0, 0),
            ("get_queue_after_clear.json", 1, 0),
        ];
        for (f, r, p) in cases {
            let q = parse_queue(&fixture(f)).unwrap();
            assert_eq!((q.running, q.pending), (r, p), "{f}");
        }
    }

    #[test]
    fn success_entry() {
        let (id, t, d) = one("get_history_id_success.json");
        assert_eq!(id, "3222a08b-ccde-40ad-b2f6-93ee0ceba517");
        assert_eq!(t.outcome, Outcome::Success);
        assert_eq!(t.duration_ms, Some(5));
        assert!(t.cached.is_empty());
        assert_eq!(
            d.needed_nodes.unwrap().into_iter().collect::<Vec<_>>(),
            ["1", "2"]
        );
        assert_eq!(d.images.len(), 1);
        assert_eq!(d.images[0].0, "2");
        assert_eq!(d.images[0].1.filename, "sentinel_ok_00001_.png");
        assert_eq!(d.images[0].1.kind, "output");
    }

    #[test]
    fn slow_success_duration() {
        let (_, t, d) = one("get_history_id_slow_success.json");
        assert_eq!(t.outcome, Outcome::Success);
        assert_eq!(t.duration_ms, Some(26614));
        assert_eq!(d.needed_nodes.unwrap().len(), 6);
        assert_eq!(d.images.len(), 2);
        assert!(d.images.iter().all(|(_, i)| i.kind == "temp"));
    }

    #[test]
    fn cached_entry_lists_cached_nodes() {
        let (_, t, _) = one("get_history_id_cached.json");
        assert_eq!(t.outcome, Outcome::Success);
        assert_eq!(t.cached, ["1", "2"]);
        assert_eq!(t.duration_ms, Some(1));
        let (_, t, _) = one("get_history_id_after_free.json");
        assert!(t.cached.is_empty());
    }

    #[test]
    fn partial_entry_needs_only_the_valid_branch() {
        let (_, t, d) = one("get_history_id_partial.json");
        assert_eq!(t.outcome, Outcome::Success);
        assert_eq!(d.needed_nodes.unwrap().len(), 2);
    }

    #[test]
    fn error_entries() {
        let (_, t, d) = one("get_history_id_error_save_outside_output.json");
        assert_eq!(t.outcome, Outcome::Error);
        assert_eq!(t.node_type.as_deref(), Some("SaveImage"));
        assert_eq!(t.exception_type.as_deref(), Some("Exception"));
        assert_eq!(t.executed.as_deref(), Some(&["1".to_string()][..]));
        assert!(d.images.is_empty());
        let (_, t, _) = one("get_history_id_error_cpu_alloc.json");
        assert_eq!(t.outcome, Outcome::Error);
        assert_eq!(t.node_type.as_deref(), Some("EmptyImage"));
        assert_eq!(t.exception_type.as_deref(), Some("RuntimeError"));
        assert!(t
            .exception_message
            .unwrap()
            .contains("DefaultCPUAllocator: can't allocate memory"));
    }

    #[test]
    fn interrupted_entries() {
        for f in [
            "get_history_id_interrupted.json",
            "get_history_id_interrupted_global.json",
            "get_history_id_sensitive_extra_data_stripped.json",
        ] {
            let (_, t, d) = one(f);
            assert_eq!(t.outcome, Outcome::Interrupted, "{f}");
            assert!(t.executed.is_some(), "{f}");
            assert!(d.images.is_empty());
        }
        let (_, t, _) = one("get_history_id_interrupted.json");
        assert_eq!(t.duration_ms, Some(6706));
        assert_eq!(t.executed.unwrap().len(), 2);
    }

    #[test]
    fn full_history_in_completion_order() {
        let body = fixture("get_history_all.json");
        let page = parse_history_page(&body).unwrap();
        assert_eq!(page.entries.len(), 11);
        let outcomes: Vec<_> = page
            .entries
            .iter()
            .map(|e| e.terminal.as_ref().unwrap().outcome.as_str())
            .collect();
        assert_eq!(outcomes.iter().filter(|o| **o == "success").count(), 7);
        assert_eq!(outcomes.iter().filter(|o| **o == "error").count(), 2);
        assert_eq!(outcomes.iter().filter(|o| **o == "interrupted").count(), 2);
        assert_eq!(
            page.entries[0].prompt_id,
            "3222a08b-ccde-40ad-b2f6-93ee0ceba517"
        );
    }

    #[test]
    fn empty_and_unknown_histories() {
        for f in [
            "get_history_empty.json",
            "get_history_after_clear.json",
            "get_history_id_unknown.json",
        ] {
            assert_eq!(parse_history_page(&fixture(f)).unwrap().entries.len(), 0);
        }
    }

    #[test]
    fn bad_bodies_are_errors_not_panics() {
        for body in [
            &b""[..],
            b"500 Internal Server Error\n\nServer got itself in trouble",
            b"{\"a\": {\"prompt\": [",
            b"[]",
            b"\xff\xfe",
        ] {
            assert!(parse_history_page(body).is_err());
            assert!(parse_queue(body).is_err());
        }
    }

    #[test]
    fn image_lists_are_walked_with_bounded_memory() {
        let images: Vec<String> = (0..1000)
            .map(|i| format!(r#"{{"filename": "f{i}.png", "subfolder": "", "type": "output"}}"#))
            .collect();
        let body = format!(
            r#"{{"a": {{"outputs": {{"1": {{"images": [{}]}}, "2": {{"images": [{{"filename": "g.png", "type": "temp"}}]}}, "3": {{"text": ["x"]}}}}, "status": {{"messages": [["execution_success", {{"timestamp": 3}}]]}}}}}}"#,
            images.join(", ")
        );
        let page = parse_history_page(body.as_bytes()).unwrap();
        let e = &page.entries[0];
        let all = e.detail();
        assert_eq!((all.images.len(), all.image_total), (1001, 1001));
        let d = e.detail_bounded(3, &[]);
        assert_eq!(d.image_total, 1001);
        let names: Vec<_> = d
            .images
            .iter()
            .map(|(n, i)| (n.as_str(), i.filename.as_str()))
            .collect();
        assert_eq!(
            names,
            [("1", "f998.png"), ("1", "f999.png"), ("2", "g.png")]
        );
        let d = e.detail_bounded(2, &["2".to_string()]);
        assert_eq!(d.image_total, 1000);
        assert_eq!(d.images[1].1.filename, "f999.png");
        let d = e.detail_bounded(0, &[]);
        assert_eq!((d.images.len(), d.image_total), (0, 1001));
        // An element that is not an image leaves that node's images out, as before.
        let bad = r#"{"a": {"outputs": {"1": {"images": [{"filename": "x.png"}, 5]}, "2": {"images": [{"filename": "y.png"}]}}, "status": {"messages": [["execution_success", {"timestamp": 3}]]}}}"#;
        let page = parse_history_page(bad.as_bytes()).unwrap();
        let d = page.entries[0].detail_bounded(10, &[]);
        assert_eq!(d.image_total, 1);
        assert_eq!(d.images[0].1.filename, "y.png");
    }

    #[test]
    fn a_bad_entry_does_not_spoil_the_page() {
        let body = br#"{"a": 5, "b": {"status": {"messages": [["execution_start", {"timestamp": 1}], ["execution_success", {"timestamp": 3}]]}}}"#;
        let page = parse_history_page(body).unwrap();
        assert_eq!(page.bad_entries, 1);
        assert_eq!(page.entries.len(), 2);
        assert!(page.entries[0].terminal.is_none());
        assert_eq!(
            page.entries[1].terminal.as_ref().unwrap().duration_ms,
            Some(2)
        );
    }
}
