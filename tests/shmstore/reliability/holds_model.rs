//! A model check of holds without the directory lock (src/store/mod.rs,
//! `Store::get_quiet` and `EntryRef`'s drop; src/store/heap.rs,
//! `begin_hold`, `finish_hold`, `abandon`, `let_go_quiet`, `settle`,
//! `named`, `forget`), as `_design::store` ("Holds without the lock")
//! describes them.
//!
//! # The model
//!
//! One key and the one block its entry lives in. Each *incarnation* of the
//! entry is a number: a removal ends one, and making the key again in the
//! same block starts the next, so a handle that kept the block of an
//! earlier incarnation would see another entry's bytes.
//!
//! - **Getters** (each a handle slot of its own): find the key in a read of
//!   the directory that no change overlapped (one step: the read is
//!   validated by the directory counter), name the block as the slot's
//!   pending hold, load the counter: if it moved, turn the pending hold into
//!   a letting go, load the block's state, and settle a REMOVED block under
//!   the lock; else put the block in the list, clear the pending hold, hold,
//!   then let go: a letting go in the pending hold, the block out of the
//!   list, the state loaded, a REMOVED block settled under the lock, the
//!   pending hold cleared. Each does this `rounds` times.
//! - **A remover**: under the lock, begins a change (the counter odd), takes
//!   the key out of the directory and marks the block REMOVED, scans every
//!   slot (its pending hold, then its list, two steps a slot), frees the
//!   block if nothing named it, makes the key again in the block if it is
//!   free (the next incarnation), ends the change, lets the lock go; twice.
//! - **Settling** (a getter under the lock): the same scan, then the block
//!   freed if it is still REMOVED and nothing named it.
//! - **Death**: a getter may die before any of its steps (at most once per
//!   run); its slot keeps what it named until the **reclaimer** (which runs
//!   once every other process has finished) forgets it under the lock: the
//!   slot's pending hold or list named the block, so the block is settled.
//!
//! Memory is sequentially consistent in the model: every step sees the
//! latest value of every word. The code's sequentially consistent fences
//! (after the pending hold is named, after a letting go, before a scan) are
//! what make the pairs of a store and a later load behave so; the other
//! orderings (release of the list length and of a cleared pending hold,
//! acquire in the scan) are reviewed in `_design::store`.
//!
//! Checked in every state: a getter that holds the block (from a counter
//! that did not move until the block leaves its list) sees the incarnation
//! it found. Checked when every process has finished: the block is not left
//! REMOVED (a removed entry nobody names is freed). Seeded bugs, each a
//! plausible shortcut, must be found.

use std::collections::{HashSet, VecDeque};

const MAX_GETTERS: usize = 2;

/// What a slot's pending hold names.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Pending {
    None,
    /// About to hold the block: no removal frees it.
    Hold,
    /// Letting go of it: protects nothing.
    Dropping,
}

/// The block's state.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Block {
    Live(u8),
    Removed(u8),
    Free,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct Slot {
    pending: Pending,
    /// Whether the slot's list has the block.
    listed: bool,
    /// Cleared by the reclaimer (a dead process's slot).
    used: bool,
}

/// A scan of the slots (by a remover or a settler), in two steps a slot.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct Scan {
    slot: u8,
    /// Whether the slot's pending hold was read (its list is next).
    pending_read: bool,
    named: bool,
}

impl Scan {
    const START: Scan = Scan {
        slot: 0,
        pending_read: false,
        named: false,
    };
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum GPc {
    Find,
    NamePending,
    LoadCounter,
    GiveUp,
    GiveUpState,
    Append,
    ClearPending,
    /// Holding the block.
    Held,
    LetGoOut,
    LetGoState,
    /// Waiting for the lock, to settle.
    SettleLock,
    Settling(Scan),
    SettleEnd,
    Done,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct Getter {
    pc: GPc,
    /// The counter and incarnation its read found.
    counter: u8,
    found: u8,
    rounds: u8,
    dead: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum RPc {
    Lock,
    Remove,
    Scanning(Scan),
    Remake,
    Unlock,
    Done,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum XPc {
    /// Waits until every other process has finished.
    Wait,
    Lock,
    /// Forgetting dead slot `slot`: whether it named the block.
    Forget {
        slot: u8,
        named: bool,
    },
    Scanning(Scan),
    Done,
}

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
struct State {
    counter: u8,
    /// The incarnation the key names, if any.
    key: Option<u8>,
    block: Block,
    /// Who holds the directory lock: a getter's index, `REMOVER` or
    /// `RECLAIMER`.
    lock: Option<u8>,
    slots: Vec<Slot>,
    getters: Vec<Getter>,
    remover: RPc,
    removals: u8,
    reclaimer: XPc,
    deaths: u8,
}

const REMOVER: u8 = 100;
const RECLAIMER: u8 = 101;

/// Shortcuts the checker must find wrong.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Bug {
    None,
    /// A scan that looks at lists only, not at pending holds.
    ScanIgnoresPending,
    /// A scan that reads a slot's list before its pending hold.
    ScanListFirst,
    /// A get that clears its pending hold before the block is in its list.
    ClearBeforeAppend,
    /// A get that checks nothing after naming its pending hold.
    NoCounterCheck,
    /// A get that gives up without looking at the block's state.
    GiveUpBlind,
    /// A letting go that never settles a REMOVED block.
    LetGoBlind,
    /// A scan that counts a letting go as a hold.
    DroppingNames,
}

#[derive(Clone, Copy)]
struct Config {
    getters: usize,
    rounds: u8,
    deaths: u8,
    bug: Bug,
}

struct Report {
    states: usize,
    /// The first violation found, with the trace that leads to it.
    violation: Option<String>,
}

fn start(cfg: &Config) -> State {
    State {
        counter: 0,
        key: Some(0),
        block: Block::Live(0),
        lock: None,
        slots: vec![
            Slot {
                pending: Pending::None,
                listed: false,
                used: true,
            };
            cfg.getters
        ],
        getters: vec![
            Getter {
                pc: GPc::Find,
                counter: 0,
                found: 0,
                rounds: 0,
                dead: false,
            };
            cfg.getters
        ],
        remover: RPc::Lock,
        removals: 0,
        reclaimer: XPc::Wait,
        deaths: 0,
    }
}

/// One step of a scan over `st.slots`; `Err(named)` when it is over.
fn scan_step(st: &State, scan: Scan, bug: Bug) -> Result<Scan, bool> {
    let mut scan = scan;
    if scan.slot as usize == st.slots.len() {
        return Err(scan.named);
    }
    let slot = st.slots[scan.slot as usize];
    let names_pending = |p: Pending| match p {
        Pending::Hold => bug != Bug::ScanIgnoresPending,
        Pending::Dropping => bug == Bug::DroppingNames,
        Pending::None => false,
    };
    let first_pending = bug != Bug::ScanListFirst;
    if !scan.pending_read {
        // The first of the slot's two loads.
        if slot.used {
            scan.named |= if first_pending {
                names_pending(slot.pending)
            } else {
                slot.listed
            };
        }
        scan.pending_read = true;
    } else {
        if slot.used {
            scan.named |= if first_pending {
                slot.listed
            } else {
                names_pending(slot.pending)
            };
        }
        scan.slot += 1;
        scan.pending_read = false;
    }
    Ok(scan)
}

fn getter_step(st: &State, i: usize, cfg: &Config) -> Option<State> {
    let g = st.getters[i];
    let mut n = st.clone();
    let me = &mut n.getters[i];
    let slot = &mut n.slots[i];
    match g.pc {
        GPc::Find => {
            if st.counter % 2 == 1 {
                return None; // a change is being made: the read is made again
            }
            match st.key {
                Some(inc) => {
                    me.counter = st.counter;
                    me.found = inc;
                    me.pc = GPc::NamePending;
                }
                None => me.pc = GPc::Done,
            }
        }
        GPc::NamePending => {
            slot.pending = Pending::Hold;
            me.pc = if cfg.bug == Bug::NoCounterCheck {
                GPc::Append
            } else {
                GPc::LoadCounter
            };
        }
        GPc::LoadCounter => {
            me.pc = if st.counter == g.counter {
                if cfg.bug == Bug::ClearBeforeAppend {
                    GPc::ClearPending
                } else {
                    GPc::Append
                }
            } else {
                GPc::GiveUp
            };
        }
        GPc::GiveUp => {
            if cfg.bug == Bug::GiveUpBlind {
                slot.pending = Pending::None;
                me.pc = GPc::Done;
            } else {
                slot.pending = Pending::Dropping;
                me.pc = GPc::GiveUpState;
            }
        }
        GPc::GiveUpState | GPc::LetGoState => {
            if matches!(st.block, Block::Removed(_))
                && !(g.pc == GPc::LetGoState && cfg.bug == Bug::LetGoBlind)
            {
                me.pc = GPc::SettleLock;
            } else {
                slot.pending = Pending::None;
                me.pc = GPc::Done;
            }
        }
        GPc::Append => {
            slot.listed = true;
            me.pc = if cfg.bug == Bug::ClearBeforeAppend {
                GPc::Held
            } else {
                GPc::ClearPending
            };
        }
        GPc::ClearPending => {
            slot.pending = Pending::None;
            me.pc = if cfg.bug == Bug::ClearBeforeAppend {
                GPc::Append
            } else {
                GPc::Held
            };
        }
        GPc::Held => {
            slot.pending = Pending::Dropping;
            me.pc = GPc::LetGoOut;
        }
        GPc::LetGoOut => {
            slot.listed = false;
            me.pc = GPc::LetGoState;
        }
        GPc::SettleLock => {
            if st.lock.is_some() {
                return None;
            }
            n.lock = Some(i as u8);
            me.pc = GPc::Settling(Scan::START);
        }
        GPc::Settling(scan) => match scan_step(st, scan, cfg.bug) {
            Ok(scan) => me.pc = GPc::Settling(scan),
            Err(named) => {
                if matches!(st.block, Block::Removed(_)) && !named {
                    n.block = Block::Free;
                }
                me.pc = GPc::SettleEnd;
            }
        },
        GPc::SettleEnd => {
            slot.pending = Pending::None;
            n.lock = None;
            me.pc = GPc::Done;
        }
        GPc::Done => {
            if g.rounds + 1 >= cfg.rounds {
                return None;
            }
            me.rounds += 1;
            me.pc = GPc::Find;
        }
    }
    Some(n)
}

fn remover_step(st: &State, cfg: &Config) -> Option<State> {
    let mut n = st.clone();
    match st.remover {
        RPc::Lock => {
            if st.lock.is_some() || st.removals == 2 {
                return None;
            }
            n.lock = Some(REMOVER);
            n.remover = RPc::Remove;
        }
        RPc::Remove => {
            n.counter += 1; // odd: a change begins
            match (st.key, st.block) {
                (Some(inc), Block::Live(b)) if inc == b => {
                    n.key = None;
                    n.block = Block::Removed(inc);
                    n.remover = RPc::Scanning(Scan::START);
                }
                // The key is absent (its block still held): make it again
                // in place once the block is free.
                _ => n.remover = RPc::Remake,
            }
        }
        RPc::Scanning(scan) => match scan_step(st, scan, cfg.bug) {
            Ok(scan) => n.remover = RPc::Scanning(scan),
            Err(named) => {
                if !named {
                    n.block = Block::Free;
                }
                n.remover = RPc::Remake;
            }
        },
        RPc::Remake => {
            // The key is out of the directory here: made again, as the next
            // incarnation, once its block is free.
            n.removals += 1;
            if st.block == Block::Free {
                n.key = Some(n.removals);
                n.block = Block::Live(n.removals);
            }
            n.remover = RPc::Unlock;
        }
        RPc::Unlock => {
            n.counter += 1; // even: the change is over
            n.lock = None;
            n.remover = if n.removals >= 2 {
                RPc::Done
            } else {
                RPc::Lock
            };
        }
        RPc::Done => return None,
    }
    Some(n)
}

fn finished(st: &State, cfg: &Config) -> bool {
    st.remover == RPc::Done
        && st
            .getters
            .iter()
            .all(|g| g.dead || (g.pc == GPc::Done && g.rounds + 1 >= cfg.rounds))
}

fn reclaimer_step(st: &State, cfg: &Config) -> Option<State> {
    let mut n = st.clone();
    match st.reclaimer {
        XPc::Wait => {
            if !finished(st, cfg) {
                return None;
            }
            n.reclaimer = XPc::Lock;
        }
        XPc::Lock => {
            if st.lock.is_some() {
                return None;
            }
            n.lock = Some(RECLAIMER);
            n.reclaimer = XPc::Forget {
                slot: 0,
                named: false,
            };
        }
        XPc::Forget { slot, named } => {
            let k = slot as usize;
            if k == st.slots.len() {
                n.reclaimer = if named {
                    XPc::Scanning(Scan::START)
                } else {
                    XPc::Done
                };
                if !named {
                    n.lock = None;
                }
            } else {
                let dead = st.getters[k].dead && st.slots[k].used;
                let s = st.slots[k];
                let names = dead && (s.pending != Pending::None || s.listed);
                if dead {
                    n.slots[k] = Slot {
                        pending: Pending::None,
                        listed: false,
                        used: false,
                    };
                }
                n.reclaimer = XPc::Forget {
                    slot: slot + 1,
                    named: named || names,
                };
            }
        }
        XPc::Scanning(scan) => match scan_step(st, scan, cfg.bug) {
            Ok(scan) => n.reclaimer = XPc::Scanning(scan),
            Err(named) => {
                if matches!(st.block, Block::Removed(_)) && !named {
                    n.block = Block::Free;
                }
                n.lock = None;
                n.reclaimer = XPc::Done;
            }
        },
        XPc::Done => return None,
    }
    Some(n)
}

/// A getter that holds the block must see the incarnation it found.
fn unsafe_hold(st: &State) -> Option<String> {
    for (i, g) in st.getters.iter().enumerate() {
        let holding = matches!(
            g.pc,
            GPc::Append | GPc::ClearPending | GPc::Held | GPc::LetGoOut
        ) && !g.dead;
        let ok = matches!(st.block, Block::Live(b) | Block::Removed(b) if b == g.found);
        if holding && !ok {
            return Some(format!(
                "getter {i} holds incarnation {} but the block is {:?}",
                g.found, st.block
            ));
        }
    }
    None
}

fn successors(st: &State, cfg: &Config) -> Vec<(String, State)> {
    let mut out = Vec::new();
    for i in 0..st.getters.len() {
        let g = st.getters[i];
        if g.dead {
            continue;
        }
        if let Some(n) = getter_step(st, i, cfg) {
            out.push((format!("getter {i} {:?}", g.pc), n));
        }
        // Killed before its next step (not while it holds the lock: a
        // holder killed there leaves the lock to recovery, which is the
        // rebuild's business, checked by the store's kill tests).
        if st.deaths < cfg.deaths && g.pc != GPc::Done && st.lock != Some(i as u8) {
            let mut n = st.clone();
            n.getters[i].dead = true;
            n.deaths += 1;
            out.push((format!("getter {i} killed at {:?}", g.pc), n));
        }
    }
    if let Some(n) = remover_step(st, cfg) {
        out.push((format!("remover {:?}", st.remover), n));
    }
    if let Some(n) = reclaimer_step(st, cfg) {
        out.push((format!("reclaimer {:?}", st.reclaimer), n));
    }
    out
}

fn run(cfg: Config) -> Report {
    let first = start(&cfg);
    let mut seen: HashSet<State> = HashSet::new();
    // Each state with the index of its parent and the step that led to it.
    let mut states: Vec<(State, usize, String)> = vec![(first.clone(), usize::MAX, String::new())];
    let mut queue = VecDeque::from([0usize]);
    seen.insert(first);
    let trace = |states: &Vec<(State, usize, String)>, mut k: usize| {
        let mut steps = Vec::new();
        while states[k].1 != usize::MAX {
            steps.push(states[k].2.clone());
            k = states[k].1;
        }
        steps.reverse();
        steps.join("\n  ")
    };
    while let Some(k) = queue.pop_front() {
        let st = states[k].0.clone();
        if let Some(why) = unsafe_hold(&st) {
            return Report {
                states: seen.len(),
                violation: Some(format!("{why}, after:\n  {}", trace(&states, k))),
            };
        }
        let next = successors(&st, &cfg);
        if next.is_empty() && matches!(st.block, Block::Removed(_)) {
            return Report {
                states: seen.len(),
                violation: Some(format!(
                    "finished with the block REMOVED and nobody to free it, after:\n  {}",
                    trace(&states, k)
                )),
            };
        }
        for (step, n) in next {
            if seen.insert(n.clone()) {
                states.push((n, k, step));
                queue.push_back(states.len() - 1);
            }
        }
    }
    Report {
        states: seen.len(),
        violation: None,
    }
}

#[test]
fn model_holds_without_the_lock() {
    for getters in 1..=MAX_GETTERS {
        for deaths in 0..=1 {
            let cfg = Config {
                getters,
                rounds: 2,
                deaths,
                bug: Bug::None,
            };
            let r = run(cfg);
            assert!(
                r.violation.is_none(),
                "{getters} getters, {deaths} deaths: {}",
                r.violation.unwrap()
            );
            eprintln!(
                "holds model: {getters} getters x 2 rounds, a remover (2 removals), \
                 {deaths} death(s): {} states, no violation",
                r.states
            );
            assert!(r.states > 100, "the model explored {} states", r.states);
        }
    }
}

#[test]
fn model_holds_finds_seeded_bugs() {
    for bug in [
        Bug::ScanIgnoresPending,
        Bug::ScanListFirst,
        Bug::ClearBeforeAppend,
        Bug::NoCounterCheck,
        Bug::GiveUpBlind,
        Bug::LetGoBlind,
        Bug::DroppingNames,
    ] {
        let r = run(Config {
            getters: 2,
            rounds: 2,
            deaths: 0,
            bug,
        });
        let found = r
            .violation
            .unwrap_or_else(|| panic!("{bug:?} was not found ({} states)", r.states));
        eprintln!("{bug:?}: {found}");
    }
}
