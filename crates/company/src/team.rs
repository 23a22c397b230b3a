//! Who works at the demo company, and the names its buyers are drawn from.

/// One team member.
#[derive(Debug, Clone, Copy)]
pub struct Member {
    pub id: &'static str,
    pub name: &'static str,
    pub role: &'static str,
    pub key: bool,
    pub timezone: &'static str,
}

pub const FOUNDER: usize = 0;
pub const MANAGER: usize = 1;

/// The founder and the sales manager are the key people; four account executives own the
/// deals; two SDRs work the leads. Ids and names match the example playbooks.
pub const TEAM: [Member; 8] = [
    Member {
        id: "maya@acme.example",
        name: "Maya Chen",
        role: "founder",
        key: true,
        timezone: "Europe/Berlin",
    },
    Member {
        id: "omar@acme.example",
        name: "Omar Haddad",
        role: "manager",
        key: true,
        timezone: "Europe/Berlin",
    },
    Member {
        id: "sam@acme.example",
        name: "Sam Ortiz",
        role: "ae",
        key: false,
        timezone: "Europe/London",
    },
    Member {
        id: "lena@acme.example",
        name: "Lena Vogel",
        role: "ae",
        key: false,
        timezone: "Europe/Berlin",
    },
    Member {
        id: "ana@acme.example",
        name: "Ana Ribeiro",
        role: "ae",
        key: false,
        timezone: "Europe/Lisbon",
    },
    Member {
        id: "cy@acme.example",
        name: "Cy Mensah",
        role: "ae",
        key: false,
        timezone: "Europe/London",
    },
    Member {
        id: "tim@acme.example",
        name: "Tim Park",
        role: "sdr",
        key: false,
        timezone: "Europe/Dublin",
    },
    Member {
        id: "ben@acme.example",
        name: "Ben Adeyemi",
        role: "sdr",
        key: false,
        timezone: "Europe/London",
    },
];

/// The account executives and the SDRs, by index into [`TEAM`].
pub const AES: [usize; 4] = [2, 3, 4, 5];
pub const SDRS: [usize; 2] = [6, 7];

pub fn index(id: &str) -> Option<usize> {
    TEAM.iter().position(|m| m.id == id)
}

pub const FIRST: [&str; 32] = [
    "Alex", "Priya", "Jonas", "Mei", "Tomás", "Aisha", "Henrik", "Sofia", "Kwame", "Elena", "Ravi",
    "Marta", "Luca", "Nadia", "Oskar", "Yuki", "Farah", "Daniel", "Ines", "Mateo", "Hana", "Piotr",
    "Leila", "Bruno", "Chloé", "Ibrahim", "Noor", "Felix", "Zara", "Emil", "Ada", "Viktor",
];

pub const LAST: [&str; 32] = [
    "Novak",
    "Sharma",
    "Berg",
    "Lin",
    "García",
    "Okoye",
    "Larsen",
    "Rossi",
    "Mensah",
    "Petrov",
    "Iyer",
    "Kowalski",
    "Moretti",
    "Haddad",
    "Lund",
    "Tanaka",
    "Rahman",
    "Weber",
    "Costa",
    "Fernández",
    "Kim",
    "Nowak",
    "Aziz",
    "Santos",
    "Dubois",
    "Khan",
    "Malik",
    "Schmidt",
    "Ahmed",
    "Holm",
    "Byrne",
    "Volkov",
];

pub const COMPANY_A: [&str; 24] = [
    "North", "Blue", "Iron", "Silver", "Bright", "Clear", "Stone", "Swift", "Green", "Harbor",
    "Summit", "Cedar", "Nova", "Atlas", "Pine", "Delta", "Orbit", "Maple", "Vertex", "Coral",
    "Falcon", "Aurora", "Granite", "Meridian",
];

pub const COMPANY_B: [&str; 16] = [
    "wind", "field", "works", "line", "path", "labs", "point", "gate", "bridge", "grid", "forge",
    "port", "leaf", "stream", "mark", "ware",
];

pub const INDUSTRIES: [&str; 8] = [
    "logistics",
    "software",
    "healthcare",
    "manufacturing",
    "retail",
    "finance",
    "media",
    "energy",
];

/// The buyer's title by role in the buying group.
pub const TITLES: [(&str, &str); 4] = [
    ("champion", "Head of Operations"),
    ("economic_buyer", "CFO"),
    ("decision_maker", "COO"),
    ("legal", "General Counsel"),
];
