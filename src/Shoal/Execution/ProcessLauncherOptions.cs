namespace Shoal.Execution;

/// <summary>How <see cref="ProcessLauncher"/> runs tasks. <see cref="LogPrefix"/> tells workers apart in a shared log directory.</summary>
public sealed record ProcessLauncherOptions(
    string Shell,
    string LogDirectory,
    int Lanes,
    IReadOnlyList<KeyValuePair<string, string>> ExtraEnvironment,
    string LogPrefix = "w0-",
    int SpawnerThreads = 1)
{
    /// <summary>Start plain-word commands without the shell (<see cref="DirectExec"/>); off with --shell or --always-shell.</summary>
    public bool DirectExec { get; init; }
}
