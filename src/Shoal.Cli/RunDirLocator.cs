using Shoal.Journal;
using Shoal.Running;

namespace Shoal.Cli;

/// <summary>Finds the run directory for the reading verbs: -r DIR, else $SHOAL_RUN_DIR (set inside tasks),
/// else the one <c>*.shoal</c> run directory in the current folder.</summary>
internal static class RunDirLocator
{
    public static RunDirectory Find(string? option)
    {
        var path = option ?? Environment.GetEnvironmentVariable("SHOAL_RUN_DIR");
        if (path is not null)
        {
            return new RunDirectory(path);
        }

        var candidates = Directory.EnumerateDirectories(".", "*.shoal")
            .Where(d => File.Exists(Path.Combine(d, RunJournal.FileName)))
            .ToList();
        return candidates.Count switch
        {
            1 => new RunDirectory(candidates[0]),
            0 => throw new JournalException("no run directory here; name one with -r DIR (shoal run prints it at the start)"),
            _ => throw new JournalException($"several run directories here ({string.Join(", ", candidates.Select(Path.GetFileName))}); name one with -r DIR"),
        };
    }
}
