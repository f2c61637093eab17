//! A minimal stderr logger for plugin messages: warnings always, everything with `-v`.

struct StderrLogger {
    verbose: bool,
}

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        self.verbose || metadata.level() <= log::Level::Warn
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            eprintln!("{}: {}", record.level().as_str().to_lowercase(), record.args());
        }
    }

    fn flush(&self) {}
}

pub fn init_logging(verbose: bool) {
    if log::set_boxed_logger(Box::new(StderrLogger { verbose })).is_ok() {
        log::set_max_level(if verbose { log::LevelFilter::Debug } else { log::LevelFilter::Warn });
    }
}
