mod adopt;
mod common;
mod errors;
mod index;
mod lifecycle;
mod logs;
mod ownership;
mod regressions;
