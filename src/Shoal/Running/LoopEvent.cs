using Shoal.Execution;

namespace Shoal.Running;

internal enum LoopEventKind
{
    Exited,
    Tick,
    Stop,
}

/// <summary>What the run loop reacts to.</summary>
internal readonly record struct LoopEvent(LoopEventKind Kind, TaskExit Exit, int Signal)
{
    public static readonly LoopEvent Tick = new(LoopEventKind.Tick, default, 0);

    public static LoopEvent Exited(TaskExit exit) => new(LoopEventKind.Exited, exit, 0);

    public static LoopEvent Stop(int signal) => new(LoopEventKind.Stop, default, signal);
}
