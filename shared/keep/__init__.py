"""Keep: which days each class of data no longer keeps and what an erasure removes (`policy`,
pure), and the timer and erasure that act on it (`expiry`). Imports baselines, notify, store,
core."""
