//! ThingsBoard paging: `pageSize`, `page` (from 0), `textSearch`, `sortProperty`, `sortOrder`,
//! answered as `{"data": [...], "totalPages", "totalElements", "hasNext"}`.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

/// Sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum SortOrder {
    #[default]
    Asc,
    Desc,
}

/// A page request, as ThingsBoard's list endpoints take it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PageLink {
    pub page_size: usize,
    #[serde(default)]
    pub page: usize,
    #[serde(default)]
    pub text_search: Option<String>,
    #[serde(default)]
    pub sort_property: Option<String>,
    #[serde(default)]
    pub sort_order: Option<SortOrder>,
}

/// Why a page request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    #[error("page size must be between 1 and {max}, got {got}")]
    PageSize { got: usize, max: usize },
}

/// Largest page ThingsBoard clients ask for in practice; a larger one is refused.
pub const MAX_PAGE_SIZE: usize = 10_000;

/// One page of results.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PageData<T> {
    pub data: Vec<T>,
    pub total_pages: usize,
    pub total_elements: usize,
    pub has_next: bool,
}

/// A value items are sorted by.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
pub enum SortKey {
    Text(String),
    Number(i64),
}

/// Filters `items` by `textSearch` (case-insensitive substring of `text`), sorts them by
/// `sortProperty` through `sort_key` (default: creation order as the items come), and cuts the
/// requested page.
pub fn paginate<T>(
    mut items: Vec<T>,
    link: &PageLink,
    text: impl Fn(&T) -> Vec<&str>,
    sort_key: impl Fn(&T, &str) -> Option<SortKey>,
) -> Result<PageData<T>, PageError> {
    if link.page_size == 0 || link.page_size > MAX_PAGE_SIZE {
        return Err(PageError::PageSize { got: link.page_size, max: MAX_PAGE_SIZE });
    }
    if let Some(search) = link.text_search.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        let needle = search.to_lowercase();
        items.retain(|item| text(item).iter().any(|t| t.to_lowercase().contains(&needle)));
    }
    if let Some(property) = link.sort_property.as_deref().filter(|p| !p.is_empty()) {
        let order = link.sort_order.unwrap_or_default();
        let mut keyed: Vec<(Option<SortKey>, T)> = items.into_iter().map(|i| (sort_key(&i, property), i)).collect();
        keyed.sort_by(|(a, _), (b, _)| {
            let ord = a.partial_cmp(b).unwrap_or(Ordering::Equal);
            if order == SortOrder::Desc { ord.reverse() } else { ord }
        });
        items = keyed.into_iter().map(|(_, i)| i).collect();
    }
    let total_elements = items.len();
    let total_pages = total_elements.div_ceil(link.page_size);
    let start = link.page.saturating_mul(link.page_size).min(total_elements);
    let data: Vec<T> = items.into_iter().skip(start).take(link.page_size).collect();
    let has_next = start + data.len() < total_elements;
    Ok(PageData { data, total_pages, total_elements, has_next })
}

impl<T> PageData<T> {
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> PageData<U> {
        PageData {
            data: self.data.into_iter().map(f).collect(),
            total_pages: self.total_pages,
            total_elements: self.total_elements,
            has_next: self.has_next,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn link(page_size: usize, page: usize) -> PageLink {
        PageLink { page_size, page, text_search: None, sort_property: None, sort_order: None }
    }

    fn names() -> Vec<String> {
        ["Boiler", "pump 2", "Pump 1", "Valve"].iter().map(|s| s.to_string()).collect()
    }

    fn by_name(s: &impl AsRef<str>, p: &str) -> Option<SortKey> {
        (p == "name").then(|| SortKey::Text(s.as_ref().to_lowercase()))
    }

    #[test]
    fn text_search_is_case_insensitive() {
        let l = PageLink { text_search: Some("PUMP".into()), ..link(10, 0) };
        let page = paginate(names(), &l, |s| vec![s.as_str()], by_name).expect("valid");
        assert_eq!(page.data, vec!["pump 2", "Pump 1"]);
    }

    #[test]
    fn sorting_descending_by_name() {
        let l = PageLink { sort_property: Some("name".into()), sort_order: Some(SortOrder::Desc), ..link(2, 0) };
        let page = paginate(names(), &l, |s| vec![s.as_str()], by_name).expect("valid");
        assert_eq!(page.data, vec!["Valve", "pump 2"]);
        assert_eq!((page.total_pages, page.total_elements, page.has_next), (2, 4, true));
    }

    #[test]
    fn a_page_past_the_end_is_empty() {
        let page = paginate(names(), &link(3, 5), |s| vec![s.as_str()], by_name).expect("valid");
        assert!(page.data.is_empty());
        assert!(!page.has_next);
    }

    #[test]
    fn a_zero_page_size_is_refused() {
        assert!(paginate(names(), &link(0, 0), |s| vec![s.as_str()], by_name).is_err());
    }

    proptest! {
        #[test]
        fn pages_cover_every_item_exactly_once(n in 0usize..60, size in 1usize..10) {
            let items: Vec<usize> = (0..n).collect();
            let mut seen = Vec::new();
            let mut page = 0;
            loop {
                let p = paginate(items.clone(), &link(size, page), |_| vec![], |_, _| None).expect("valid");
                prop_assert_eq!(p.total_elements, n);
                seen.extend(p.data);
                if !p.has_next { break; }
                page += 1;
            }
            prop_assert_eq!(seen, items);
        }
    }
}
