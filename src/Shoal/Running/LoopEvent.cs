using Shoal.Execution;

namespace Shoal.Running;

internal enum LoopEventKind
{
    Exited,
    Tick,
    Stop,
    Joined,
    Lost,
    NoMoreWorkers,
    EndTime,
}

/// <summary>What the run loop reacts to.</summary>
internal readonly record struct LoopEvent(LoopEventKind Kind, TaskExit Exit, int Signal, WorkerInfo? Worker = null, ITaskLauncher? Launcher = null, DateTimeOffset? End = null)
{
    public static LoopEvent EndTime(DateTimeOffset? end) => new(LoopEventKind.EndTime, default, 0, End: end);

    public static readonly LoopEvent Tick = new(LoopEventKind.Tick, default, 0);

    public static readonly LoopEvent NoMoreWorkers = new(LoopEventKind.NoMoreWorkers, default, 0);

    public static LoopEvent Exited(TaskExit exit) => new(LoopEventKind.Exited, exit, 0);

    public static LoopEvent Stop(int signal) => new(LoopEventKind.Stop, default, signal);

    public static LoopEvent Joined(WorkerInfo worker, ITaskLauncher launcher) => new(LoopEventKind.Joined, default, 0, worker, launcher);

    public static LoopEvent Lost(int worker) => new(LoopEventKind.Lost, default, worker);
}
