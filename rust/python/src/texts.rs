//! String columns copied out of Python into one arena.

/// A string's place in [`Texts`]' arena.
#[derive(Clone, Copy)]
pub struct Span {
    start: usize,
    end: usize,
}

/// The string columns of a batch: names, units and tags, copied into one arena.
#[derive(Default)]
pub struct Texts {
    arena: String,
    pub names: Vec<Span>,
    pub units: Vec<Span>,
    /// Every row's tag pairs, one row after another.
    pub pairs: Vec<(Span, Span)>,
    /// Where each row's pairs end in `pairs`.
    pub row_ends: Vec<usize>,
}

impl Texts {
    pub fn clear(&mut self) {
        self.arena.clear();
        self.names.clear();
        self.units.clear();
        self.pairs.clear();
        self.row_ends.clear();
    }

    pub fn retained_bytes(&self) -> usize {
        self.arena.capacity()
            + (self.names.capacity() + self.units.capacity()) * size_of::<Span>()
            + self.pairs.capacity() * size_of::<(Span, Span)>()
            + self.row_ends.capacity() * size_of::<usize>()
    }

    /// Copies `s` in.
    pub fn push(&mut self, s: &str) -> Span {
        let start = self.arena.len();
        self.arena.push_str(s);
        Span {
            start,
            end: self.arena.len(),
        }
    }

    pub fn get(&self, span: Span) -> &str {
        &self.arena[span.start..span.end]
    }

    /// Appends the strings at `spans` to `out`.
    pub fn strs<'a>(&'a self, spans: &[Span], out: &mut Vec<&'a str>) {
        out.extend(spans.iter().map(|&s| self.get(s)));
    }

    /// Appends every tag pair to `out`.
    pub fn pair_strs<'a>(&'a self, out: &mut Vec<(&'a str, &'a str)>) {
        out.extend(self.pairs.iter().map(|&(k, v)| (self.get(k), self.get(v))));
    }

    /// Appends each row's slice of `pairs` (as filled by [`Texts::pair_strs`]) to `out`.
    pub fn rows<'p, T>(&self, pairs: &'p [T], out: &mut Vec<&'p [T]>) {
        let mut start = 0;
        out.extend(self.row_ends.iter().map(|&end| {
            let row = &pairs[start..end];
            start = end;
            row
        }));
    }
}
