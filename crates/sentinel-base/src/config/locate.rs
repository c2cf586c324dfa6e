//! Finds the line and column of a field in a YAML document from its path
//! (`collectors.comfyui.url`, `groups[0].rules[2].expr`). serde reports positions for
//! errors it raises itself; checks that run after deserialization (a regex that does not
//! compile, a PromQL expression that does not parse) use this to point at the source.

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A 1-based position in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

#[derive(Debug)]
enum Node {
    Scalar(Marker),
    Seq(Marker, Vec<Node>),
    Map(Marker, Vec<(String, Marker, Node)>),
}

impl Node {
    fn marker(&self) -> Marker {
        match self {
            Node::Scalar(m) | Node::Seq(m, _) | Node::Map(m, _) => *m,
        }
    }
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    root: Option<Node>,
}

enum Frame {
    Seq(Marker, Vec<Node>),
    Map(
        Marker,
        Vec<(String, Marker, Node)>,
        Option<(String, Marker)>,
    ),
}

impl Builder {
    fn finish(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq(_, items)) => items.push(node),
            Some(Frame::Map(_, entries, pending)) => match pending.take() {
                None => {
                    // A key. Only scalar keys are addressable by path.
                    let key = match &node {
                        Node::Scalar(_) => String::new(),
                        _ => "?".to_string(),
                    };
                    *pending = Some((key, node.marker()));
                }
                Some((k, m)) => entries.push((k, m, node)),
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(value, ..) => {
                // Keys need their text; record it by peeking at the map frame.
                if let Some(Frame::Map(_, _, pending @ None)) = self.stack.last_mut() {
                    *pending = Some((value, mark));
                    return;
                }
                self.finish(Node::Scalar(mark));
            }
            Event::Alias(_) => self.finish(Node::Scalar(mark)),
            Event::SequenceStart(..) => self.stack.push(Frame::Seq(mark, Vec::new())),
            Event::MappingStart(..) => self.stack.push(Frame::Map(mark, Vec::new(), None)),
            Event::SequenceEnd => {
                if let Some(Frame::Seq(m, items)) = self.stack.pop() {
                    self.finish(Node::Seq(m, items));
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map(m, entries, _)) = self.stack.pop() {
                    self.finish(Node::Map(m, entries));
                }
            }
            _ => {}
        }
    }
}

/// Splits `a.b[2].c` into segments.
fn segments(path: &str) -> Vec<Seg<'_>> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (name, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            out.push(Seg::Key(name));
        }
        while let Some(end) = rest.find(']') {
            if let Ok(i) = rest[1..end].parse() {
                out.push(Seg::Index(i));
            }
            rest = &rest[end + 1..];
        }
    }
    out
}

enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// The position of the value at `path` (or of the deepest ancestor that exists; for a
/// missing key, its parent mapping). `None` if the document does not parse.
pub fn locate(source: &str, path: &str) -> Option<Position> {
    let mut b = Builder::default();
    let mut parser = Parser::new_from_str(source);
    parser.load(&mut b, false).ok()?;
    let mut node = b.root.as_ref()?;
    let mut at = node.marker();
    for seg in segments(path) {
        let next = match (seg, node) {
            (Seg::Key(k), Node::Map(_, entries)) => entries
                .iter()
                .find(|(key, _, _)| key == k)
                .map(|(_, km, v)| (v, *km)),
            (Seg::Index(i), Node::Seq(_, items)) => items.get(i).map(|v| (v, v.marker())),
            _ => None,
        };
        match next {
            Some((v, m)) => {
                node = v;
                // Point at a scalar value itself, at the key of a collection.
                at = match v {
                    Node::Scalar(vm) => *vm,
                    _ => m,
                };
            }
            None => break,
        }
    }
    Some(Position {
        line: at.line(),
        column: at.col() + 1,
    })
}

/// A key written twice in one mapping: its path, and where the first and the second
/// (duplicate) occurrence are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateKey {
    pub path: String,
    pub first: Position,
    pub duplicate: Position,
}

/// The first key (in document order of the duplicate) written twice in the same
/// mapping, if any. `None` also when the document does not parse.
pub fn find_duplicate_key(source: &str) -> Option<DuplicateKey> {
    let mut b = Builder::default();
    let mut parser = Parser::new_from_str(source);
    parser.load(&mut b, false).ok()?;
    let pos = |m: &Marker| Position {
        line: m.line(),
        column: m.col() + 1,
    };
    let mut found: Option<DuplicateKey> = None;
    // An explicit stack: the nesting was bounded by the depth pre-scan, but a walk
    // must not recurse on input in any case.
    let mut todo: Vec<(String, &Node)> = vec![(String::new(), b.root.as_ref()?)];
    while let Some((path, node)) = todo.pop() {
        match node {
            Node::Scalar(_) => {}
            Node::Seq(_, items) => {
                for (i, v) in items.iter().enumerate() {
                    todo.push((format!("{path}[{i}]"), v));
                }
            }
            Node::Map(_, entries) => {
                let mut seen: std::collections::HashMap<&str, &Marker> =
                    std::collections::HashMap::new();
                for (k, m, v) in entries {
                    let child = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    if k != "?" && k != "<<" {
                        if let Some(first) = seen.get(k.as_str()) {
                            let cand = DuplicateKey {
                                path: child.clone(),
                                first: pos(first),
                                duplicate: pos(m),
                            };
                            let earlier = found.as_ref().is_none_or(|f| {
                                (cand.duplicate.line, cand.duplicate.column)
                                    < (f.duplicate.line, f.duplicate.column)
                            });
                            if earlier {
                                found = Some(cand);
                            }
                        } else {
                            seen.insert(k, m);
                        }
                    }
                    todo.push((child, v));
                }
            }
        }
    }
    found
}

/// The plain text of the scalar that starts at `pos` (up to the end of its line, a
/// comment, or a flow indicator), for messages that quote a value.
pub fn scalar_at(source: &str, pos: Position) -> Option<&str> {
    let line = source.lines().nth(pos.line.checked_sub(1)?)?;
    let start = line.char_indices().nth(pos.column.checked_sub(1)?)?.0;
    let rest = &line[start..];
    let rest = rest.trim_start_matches(['"', '\'']);
    let end = rest
        .find(|c: char| matches!(c, ',' | ']' | '}' | '"' | '\'' | '#') || c.is_whitespace())
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_values() {
        let src = "a:\n  b: 1\n  list:\n    - x: 2\n    - x: 3\n      y: [4, 5]\n";
        assert_eq!(locate(src, "a.b"), Some(Position { line: 2, column: 6 }));
        assert_eq!(
            locate(src, "a.list[1].x"),
            Some(Position {
                line: 5,
                column: 10
            })
        );
        assert_eq!(
            locate(src, "a.list[1].y[1]"),
            Some(Position {
                line: 6,
                column: 14
            })
        );
        // Missing key: its parent.
        assert_eq!(locate(src, "a.nope"), Some(Position { line: 1, column: 1 }));
    }

    #[test]
    fn duplicate_key_is_found_at_the_duplicate() {
        let src = "a: 1\nlog:\n  level: info\n  format: text\n  level: debug\na: 2\n";
        let d = find_duplicate_key(src).unwrap();
        assert_eq!(d.path, "log.level");
        assert_eq!(d.first, Position { line: 3, column: 3 });
        assert_eq!(d.duplicate, Position { line: 5, column: 3 });
        assert_eq!(find_duplicate_key("a: 1\nb: {a: 1}\n"), None);
    }

    #[test]
    fn scalar_text_is_extracted() {
        let src = "x:\n  y: 1e309 # c\n  z: [\"q\", 2]\n";
        assert_eq!(
            scalar_at(src, Position { line: 2, column: 6 }),
            Some("1e309")
        );
        assert_eq!(scalar_at(src, Position { line: 3, column: 7 }), Some("q"));
    }
}
