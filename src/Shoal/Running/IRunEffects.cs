using Shoal.Execution;
using Shoal.Journal;

namespace Shoal.Running;

/// <summary>What <see cref="RunState"/> asks the world to do. <see cref="RunLoop"/> carries it out (launchers,
/// journal); tests record it.</summary>
public interface IRunEffects
{
    /// <summary>Start an attempt on a worker.</summary>
    void Launch(int worker, LaunchRequest request);

    /// <summary>Signal a running attempt's process group on its worker.</summary>
    void Signal(int worker, int task, int signal);

    /// <summary>Append a row to the journal.</summary>
    void Record(AttemptRecord record);

    /// <summary>The worker is out of the run: close its launcher (nothing more goes to it).</summary>
    void DropWorker(int worker);

    /// <summary>The worker is idle and nothing left can run on it: close it and hand its node back to SLURM.</summary>
    void ReleaseWorker(int worker);

    /// <summary>The run passed (or, <paramref name="stopped"/>, stopped at) the <c>#SHOAL barrier</c> on
    /// <paramref name="line"/>, with <paramref name="failed"/> tasks above it failed.</summary>
    void PassedBarrier(int line, int failed, bool stopped);
}
