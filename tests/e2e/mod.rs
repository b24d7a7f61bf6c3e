mod common;
mod errors;
mod index;
mod lifecycle;
mod limits;
mod logs;
mod regressions;
