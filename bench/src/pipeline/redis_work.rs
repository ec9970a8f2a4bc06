//! What Redis did for one end-to-end run, from its own counters.
//!
//! `INFO commandstats` keeps, per command, how often it ran and the
//! microseconds it took. A script call (`EVALSHA`) is counted with the
//! time of everything it ran, and each command the script ran is counted
//! again under its own name. So the two readings taken around a run tell
//! how many script calls and commands each message cost, how long the
//! scripts took, and how much of that the commands themselves took; the
//! rest is the Lua around them (converting arguments and replies,
//! building key names).
//!
//! The counters are the server's, for every client: the benchmark reads
//! them as differences around a run on a Redis nothing else is using.

use redis::aio::ConnectionLike;

use crate::queue::BenchError;

/// Commands that run scripts; their time includes the commands they ran.
const SCRIPT_COMMANDS: &[&str] = &["evalsha", "eval", "evalsha_ro", "eval_ro", "fcall"];

/// Counters of `INFO commandstats` at one moment, or their difference.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RedisWork {
    /// Script calls.
    pub script_calls: f64,
    /// Microseconds spent in script calls, their commands included.
    pub script_usec: f64,
    /// Other commands: those scripts ran and those sent directly.
    pub command_calls: f64,
    /// Microseconds spent in those commands.
    pub command_usec: f64,
}

impl RedisWork {
    /// Reads the counters now: the server's, or on a Redis Cluster the
    /// sum of every node's (the cluster client asks them all).
    pub async fn read(conn: &mut impl ConnectionLike) -> Result<Self, BenchError> {
        let info: redis::Value = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(conn)
            .await?;
        Ok(Self::of_answer(&info))
    }

    /// The counters of an `INFO` answer: one text, or a map of node to
    /// text, added up.
    fn of_answer(answer: &redis::Value) -> Self {
        match answer {
            redis::Value::Map(nodes) => nodes
                .iter()
                .map(|(_, text)| Self::of_answer(text))
                .fold(Self::default(), |sum, node| sum.plus(&node)),
            other => match redis::from_redis_value_ref::<String>(other) {
                Ok(text) => Self::parse(&text),
                Err(_) => Self::default(),
            },
        }
    }

    /// Both readings' counters added.
    fn plus(&self, other: &Self) -> Self {
        Self {
            script_calls: self.script_calls + other.script_calls,
            script_usec: self.script_usec + other.script_usec,
            command_calls: self.command_calls + other.command_calls,
            command_usec: self.command_usec + other.command_usec,
        }
    }

    /// The counters of an `INFO commandstats` answer. The `INFO` command
    /// itself is left out, so a reading does not count its own call.
    pub fn parse(info: &str) -> Self {
        let mut work = Self::default();
        for line in info.lines() {
            let Some(rest) = line.trim().strip_prefix("cmdstat_") else {
                continue;
            };
            let Some((name, fields)) = rest.split_once(':') else {
                continue;
            };
            let field = |key: &str| {
                fields
                    .split(',')
                    .filter_map(|pair| pair.split_once('='))
                    .find(|(k, _)| *k == key)
                    .and_then(|(_, v)| v.parse::<f64>().ok())
                    .unwrap_or(0.0)
            };
            let (calls, usec) = (field("calls"), field("usec"));
            if name == "info" || name.starts_with("config") {
                continue;
            }
            if SCRIPT_COMMANDS.contains(&name) {
                work.script_calls += calls;
                work.script_usec += usec;
            } else {
                work.command_calls += calls;
                work.command_usec += usec;
            }
        }
        work
    }

    /// What happened between `before` and this reading, per message of
    /// `messages`.
    pub fn since(&self, before: &Self, messages: u64) -> Self {
        let per = messages.max(1) as f64;
        Self {
            script_calls: (self.script_calls - before.script_calls) / per,
            script_usec: (self.script_usec - before.script_usec) / per,
            command_calls: (self.command_calls - before.command_calls) / per,
            command_usec: (self.command_usec - before.command_usec) / per,
        }
    }

    /// One line for a report, of a per-message difference.
    pub fn describe(&self) -> String {
        format!(
            "Redis per message: {:.2} script calls taking {:.0} µs; {:.1} commands, run by them or sent alone, taking {:.0} µs",
            self.script_calls, self.script_usec, self.command_calls, self.command_usec
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "# Commandstats\r\n\
        cmdstat_evalsha:calls=10,usec=500,usec_per_call=50.00,rejected_calls=0,failed_calls=1\r\n\
        cmdstat_hset:calls=40,usec=100,usec_per_call=2.50,rejected_calls=0,failed_calls=0\r\n\
        cmdstat_blpop:calls=2,usec=20,usec_per_call=10.00,rejected_calls=0,failed_calls=0\r\n\
        cmdstat_info:calls=7,usec=70,usec_per_call=10.00,rejected_calls=0,failed_calls=0\r\n\
        cmdstat_config|resetstat:calls=1,usec=9,usec_per_call=9.00,rejected_calls=0,failed_calls=0\r\n";

    #[test]
    fn scripts_and_commands_are_counted_apart_and_info_is_left_out() {
        let work = RedisWork::parse(INFO);
        assert_eq!(
            work,
            RedisWork {
                script_calls: 10.0,
                script_usec: 500.0,
                command_calls: 42.0,
                command_usec: 120.0,
            }
        );
    }

    #[test]
    fn a_difference_is_per_message() {
        let before = RedisWork::parse(INFO);
        let after = RedisWork {
            script_calls: 30.0,
            script_usec: 1500.0,
            command_calls: 142.0,
            command_usec: 520.0,
        };
        let per = after.since(&before, 10);
        assert_eq!(per.script_calls, 2.0);
        assert_eq!(per.script_usec, 100.0);
        assert_eq!(per.command_calls, 10.0);
        assert_eq!(per.command_usec, 40.0);
        assert!(per.describe().contains("2.00 script calls taking 100 µs"));
    }

    #[test]
    fn a_cluster_answer_adds_up_its_nodes() {
        let node = || redis::Value::BulkString(INFO.as_bytes().to_vec());
        let answer = redis::Value::Map(vec![
            (redis::Value::SimpleString("a:1".into()), node()),
            (redis::Value::SimpleString("b:2".into()), node()),
        ]);
        let one = RedisWork::parse(INFO);
        assert_eq!(RedisWork::of_answer(&answer), one.plus(&one));
        assert_eq!(RedisWork::of_answer(&node()), one);
    }

    #[test]
    fn lines_that_are_not_counters_are_ignored() {
        assert_eq!(
            RedisWork::parse("# Commandstats\r\ngarbage\r\ncmdstat_x\r\n"),
            RedisWork::default()
        );
    }
}
