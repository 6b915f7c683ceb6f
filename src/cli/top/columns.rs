//! Column layout shared by `pitctl top`'s pool pane and worker table: a narrow terminal drops
//! whole columns, least useful first, instead of cutting every column down to unreadable
//! stubs or cutting the line at the right edge; the remaining ones keep their display order.

/// One column: what it shows, its head, its width in cells, and whether it is right-aligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column<C> {
    pub id: C,
    pub head: &'static str,
    pub width: u16,
    pub right: bool,
}

impl<C> Column<C> {
    pub const fn new(id: C, head: &'static str, width: u16, right: bool) -> Column<C> {
        Column { id, head, width, right }
    }

    /// `text` in this column's alignment; left-aligned text is not padded, so a last column
    /// leaves no trailing blanks.
    pub fn align(&self, text: &str) -> String {
        if self.right {
            format!("{text:>w$}", w = self.width as usize)
        } else {
            text.to_string()
        }
    }
}

/// The columns of `columns` (in display order) that fit `room` cells with one cell between
/// neighbours, taken in `priority` order until the next one does not fit.
pub fn fit<C: Copy + PartialEq>(columns: &[Column<C>], priority: &[C], room: u16) -> Vec<Column<C>> {
    let mut room = room;
    let mut chosen: Vec<C> = Vec::new();
    for id in priority {
        let Some(col) = columns.iter().find(|c| c.id == *id) else {
            continue;
        };
        let cost = col.width + u16::from(!chosen.is_empty());
        if cost > room {
            break;
        }
        room -= cost;
        chosen.push(*id);
    }
    columns.iter().filter(|c| chosen.contains(&c.id)).copied().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLUMNS: [Column<char>; 3] = [
        Column::new('a', "A", 3, false),
        Column::new('b', "B", 4, true),
        Column::new('c', "C", 2, true),
    ];

    #[test]
    fn columns_are_taken_by_priority_until_one_does_not_fit_and_keep_display_order() {
        let heads = |room| {
            fit(&COLUMNS, &['c', 'a', 'b'], room)
                .iter()
                .map(|c| c.head)
                .collect::<Vec<_>>()
        };
        assert_eq!(heads(11), ["A", "B", "C"]);
        assert_eq!(heads(10), ["A", "C"]);
        assert_eq!(heads(2), ["C"]);
        assert!(heads(1).is_empty());
        // A column left out of the priority list (not wanted now) is never shown.
        assert_eq!(fit(&COLUMNS, &['a'], 20).len(), 1);
    }

    #[test]
    fn right_aligned_text_is_padded_to_the_width() {
        assert_eq!(COLUMNS[1].align("7"), "   7");
        assert_eq!(COLUMNS[0].align("7"), "7");
    }
}
