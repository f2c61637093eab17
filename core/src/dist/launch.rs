//! Whether this process was started by an MPI launcher, read from the variables launchers
//! set: Open MPI's `mpirun` (`OMPI_COMM_WORLD_*`), Slurm's `srun` (`SLURM_NTASKS` with
//! `SLURM_PROCID`), MPICH/Hydra and PMI (`PMI_SIZE`, `PMI_RANK`). It only reads; starting
//! MPI is `mpi.rs`'s business.

/// What the launcher says about this process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Launch {
    pub world: usize,
    pub rank: usize,
    /// The rank among those on this machine.
    pub local_rank: usize,
}

fn number(get: &dyn Fn(&str) -> Option<String>, names: &[&str]) -> Option<usize> {
    names.iter().find_map(|n| get(n).and_then(|v| v.trim().parse().ok()))
}

/// The launch described by environment variables read through `get`.
pub fn launch_from(get: &dyn Fn(&str) -> Option<String>) -> Option<Launch> {
    let world = number(get, &["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"])
        .or_else(|| get("SLURM_PROCID").and_then(|_| number(get, &["SLURM_NTASKS"])))?;
    let rank = number(get, &["OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "SLURM_PROCID"]).unwrap_or(0);
    let local_rank = number(get, &["OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"]).unwrap_or(rank);
    Some(Launch { world, rank, local_rank })
}

/// The launch this process's environment describes, if any.
pub fn launch_from_env() -> Option<Launch> {
    launch_from(&|name| std::env::var(name).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        move |name| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn launchers_are_recognised_by_their_variables() {
        let ompi =
            env(&[("OMPI_COMM_WORLD_SIZE", "4"), ("OMPI_COMM_WORLD_RANK", "3"), ("OMPI_COMM_WORLD_LOCAL_RANK", "1")]);
        assert_eq!(launch_from(&ompi), Some(Launch { world: 4, rank: 3, local_rank: 1 }));
        let slurm = env(&[("SLURM_NTASKS", "2"), ("SLURM_PROCID", "1"), ("SLURM_LOCALID", "0")]);
        assert_eq!(launch_from(&slurm), Some(Launch { world: 2, rank: 1, local_rank: 0 }));
        // An allocation's SLURM_NTASKS alone (a shell inside salloc) is not a launch.
        assert_eq!(launch_from(&env(&[("SLURM_NTASKS", "2")])), None);
        assert_eq!(launch_from(&env(&[])), None);
    }
}
