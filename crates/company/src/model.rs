//! The model's parameters. Every one is an assumption about how a small B2B sales team
//! behaves, not a measurement: `pipewright simulate` prints them with its results, and any
//! can be changed with `--set name=value` to see how much a conclusion rests on it.

use serde::Serialize;

/// One parameter as printed: its name, value and what it says.
#[derive(Debug, Clone, Serialize)]
pub struct Assumption {
    pub name: &'static str,
    pub value: f64,
    pub says: &'static str,
}

macro_rules! model {
    ($( $(#[doc = $doc:literal])+ $name:ident = $default:expr ),* $(,)?) => {
        /// The demo company's model: who the team is is fixed (see the crate's documentation);
        /// how work arrives and how people and buyers behave are these parameters. Rates are
        /// per week; chances are between 0 and 1; lengths are in days unless named in hours.
        #[derive(Debug, Clone, PartialEq, Serialize)]
        pub struct Model {
            /// The seed: the same seed and parameters give the same company, event for event.
            pub seed: u64,
            $( $(#[doc = $doc])+ pub $name: f64, )*
        }

        impl Default for Model {
            fn default() -> Self {
                Self { seed: 7, $( $name: $default, )* }
            }
        }

        impl Model {
            /// Every parameter, in the order documented.
            pub fn assumptions(&self) -> Vec<Assumption> {
                vec![$( Assumption {
                    name: stringify!($name),
                    value: self.$name,
                    says: concat!($($doc),+).trim_ascii(),
                }, )*]
            }

            /// Changes one parameter by name, from `--set name=value`.
            pub fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
                let value: f64 = value.trim().parse().map_err(|_| {
                    format!("{name}: expected a number, got {value:?}")
                })?;
                if !value.is_finite() || value < 0.0 {
                    return Err(format!("{name}: expected a number of zero or more, got {value}"));
                }
                match name {
                    $( stringify!($name) => {
                        if name.starts_with("p_") && value > 1.0 {
                            return Err(format!("{name}: a chance is between 0 and 1, got {value}"));
                        }
                        self.$name = value;
                    } )*
                    _ => return Err(format!(
                        "unknown parameter {name:?}; the parameters are: {}",
                        [$( stringify!($name) ),*].join(", ")
                    )),
                }
                Ok(())
            }
        }
    };
}

model! {
    /// Inbound leads (forms, webinars) a week.
    inbound_leads_per_week = 9.0,
    /// Outbound-list leads a week, owned by an SDR from the start.
    outbound_leads_per_week = 5.0,
    /// Deals a week that start without a lead (referrals, partners, an AE's own network).
    referral_deals_per_week = 1.5,
    /// Without routing, the chance an inbound lead is picked up from the shared queue within
    /// the working day; the rest wait for the sales manager to hand them out on Monday.
    p_queue_pickup = 0.55,
    /// Without routing, the mean hours from arrival to the first touch of a lead picked up
    /// from the queue.
    queue_hours = 7.0,
    /// With routing, the mean hours from assignment to the owner's first touch.
    routed_hours = 1.5,
    /// The chance a lead touched at once becomes a deal. Fewer do the longer it waited (the
    /// direction reported by Oldroyd, McElheran and Elkington, "The Short Life of Online Sales
    /// Leads", HBR, March 2011; the size here is an assumption).
    p_lead_converts = 0.42,
    /// The hours of waiting for a first touch after which a lead's chance to convert halves.
    lead_halflife_hours = 36.0,
    /// The chance that a lead that will not convert goes quiet rather than saying no.
    p_lead_goes_quiet = 0.5,
    /// The chance a re-engagement cadence brings a quiet lead back to talk.
    p_lead_cadence_revives = 0.15,
    /// Days in discovery, typically: a deal's own length in each stage is drawn between 60%
    /// and 160% of the stage's typical length.
    discovery_days = 10.0,
    /// Days in demo, typically.
    demo_days = 12.0,
    /// Days in proposal, typically.
    proposal_days = 14.0,
    /// Days in negotiation, typically.
    negotiation_days = 10.0,
    /// Days in legal, typically, when the review does not stall.
    legal_days = 7.0,
    /// The chance a deal is lost at the end of discovery, for ordinary reasons (no fit); the
    /// later stages' chances follow (no budget, a competitor, timing, terms).
    p_lost_discovery = 0.25,
    /// The chance a deal is lost at the end of demo.
    p_lost_demo = 0.15,
    /// The chance a deal is lost at the end of proposal.
    p_lost_proposal = 0.12,
    /// The chance a deal is lost at the end of negotiation.
    p_lost_negotiation = 0.08,
    /// The chance a deal is lost at the end of legal.
    p_lost_legal = 0.04,
    /// The chance of a touch (an email either way, a call, a meeting, a note) on a working
    /// day of a deal that is moving.
    p_activity = 0.5,
    /// The share of its last stage during which a deal that will be lost for ordinary
    /// reasons fades: the buyer stops answering and only the owner still writes and calls.
    fading_share = 0.5,
    /// The chance a deal goes quiet after an enthusiastic demo (the article's first case).
    p_quiet_after_demo = 0.45,
    /// The chance a quiet deal comes back by itself, 7 to 25 days in.
    p_revives_alone = 0.2,
    /// Without a system, the chance the founder notices a quiet deal, 7 to 12 days in, and
    /// writes to the buyer.
    p_founder_notices_quiet = 0.75,
    /// The chance the founder's note brings a quiet deal back.
    p_founder_revives = 0.6,
    /// The chance a re-engagement sequence (proof, not pressure) brings a quiet deal back,
    /// within 1 to 4 days of its start.
    p_sequence_revives = 0.45,
    /// Once a sequence ran without an answer, the chance the founder still steps in.
    p_founder_after_sequence = 0.3,
    /// Days of quiet after which a deal nobody revived is lost.
    dark_after_days = 30.0,
    /// The chance an implementation concern comes up in demo or proposal.
    p_implementation = 0.3,
    /// The chance a pricing objection comes up in proposal or negotiation.
    p_pricing = 0.4,
    /// Without a playbook, the chance the founder answers an objection herself, 1 to 3 days
    /// after it is raised.
    p_founder_answers = 0.7,
    /// When the playbook already answered (an asset sent, the owner's call), the chance the
    /// founder still steps in.
    p_founder_answers_covered = 0.15,
    /// The chance the owner does a task or acts on an alert the system gave them.
    p_owner_acts = 0.85,
    /// The chance an objection nobody answered loses the deal.
    p_loss_unanswered = 0.45,
    /// The chance an objection the founder answered loses the deal.
    p_loss_founder = 0.12,
    /// The chance an objection answered by the system's asset or the owner's call alone
    /// loses the deal.
    p_loss_asset = 0.25,
    /// The chance an objection answered by both the asset and the owner's call loses the
    /// deal.
    p_loss_asset_and_owner = 0.15,
    /// The discount the founder gives when she answers a pricing objection, as a share.
    founder_discount = 0.1,
    /// The chance a buyer opens an asset sent to them.
    p_asset_viewed = 0.7,
    /// The chance a deal stays single-threaded: only the champion takes part (the economic
    /// buyer skips the demo and never writes), a known risk factor for `pipewright risk`.
    p_single_threaded = 0.3,
    /// How many times likelier a single-threaded deal is lost at the end of proposal,
    /// negotiation and legal.
    single_threaded_loss = 2.5,
    /// The chance legal review stalls.
    p_legal_stall = 0.45,
    /// How many days a stalled review sits, typically (drawn between half and twice this).
    legal_stall_days = 25.0,
    /// Without a system, the chance the sales manager chases a stalled review, 14 to 18 days
    /// into legal.
    p_manager_chases = 0.7,
    /// The chance a chase (the manager's, or with the system the owner's after an alert)
    /// unsticks a stalled review within 2 to 5 days.
    p_chase_unsticks = 0.6,
    /// The chance a stalled review that ran its course loses the deal.
    p_loss_stall = 0.3,
    /// The chance the founder joins a large deal (60,000 or more) in negotiation as its
    /// executive sponsor: a reason no example playbook covers.
    p_executive_sponsor = 0.3,
    /// The chance a key person writes an intervention down (`intervention.logged`); the rest
    /// are found from their touches.
    p_logged = 0.35,
}
