namespace Shoal.Execution;

/// <summary>Starts attempts and signals them; reports each end through the callback it was built with.
/// Implementations: <see cref="ProcessLauncher"/> (real processes) and test fakes that finish on command.</summary>
public interface ITaskLauncher : IDisposable
{
    void Launch(LaunchRequest request);

    /// <summary>Sends <paramref name="signal"/> to the whole process group of a running task, if it still runs.</summary>
    void Signal(int task, int signal);
}
