//! weir's shared vocabulary: the identifiers, the job spec with its validation, the HTTP
//! API's wire types, and the seams (clock, randomness) through which coordinator and worker
//! logic reach the outside world, so the simulation can drive the same code.

pub mod bugs;
pub mod cli_error;
pub mod ids;
pub mod seams;
pub mod spec;
pub mod wire;
