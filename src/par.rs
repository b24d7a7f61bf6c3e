//! Per-item work that is mostly kernel time (opening and reading small
//! files) spread over the cores, for long lists.

/// `f` over `items`, in order; on several threads when there are more than
/// `per_thread` items.
pub fn on_all_cores<T: Sync, R: Send>(
    items: &[T],
    per_thread: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = cores
        .min(8)
        .min(items.len().div_ceil(per_thread.max(1)))
        .max(1);
    if threads == 1 {
        return items.iter().map(f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|s| {
        let workers: Vec<_> = items
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().map(f).collect::<Vec<_>>()))
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("a worker thread panicked"))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn keeps_the_order_whatever_the_split() {
        for n in [0, 1, 5, 1000] {
            let items: Vec<usize> = (0..n).collect();
            assert_eq!(
                super::on_all_cores(&items, 7, |i| i * 2),
                items.iter().map(|i| i * 2).collect::<Vec<_>>()
            );
        }
    }
}
