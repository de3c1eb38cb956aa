using System.Globalization;
using Shoal.Journal;

namespace Shoal.Running;

/// <summary>
/// The folder of a run, and the one place that knows its layout: <c>journal.db</c>, a <c>lock</c> held while a run
/// uses it, <c>out/s&lt;session&gt;/</c> with the lane logs (<see cref="LaneLog"/>), and <c>jobs/</c> with the batch
/// script and outputs of a chain of SLURM jobs. Default place: beside the task file, named after it
/// (<c>tasks.txt</c> → <c>tasks.txt.shoal</c>).
/// </summary>
public sealed class RunDirectory : IDisposable
{
    /// <summary>ERROR_SHARING_VIOLATION: how .NET's flock emulation says the lock is taken.</summary>
    internal const int SharingViolation = unchecked((int)0x80070020);

    private FileStream? _lock;

    public RunDirectory(string path)
    {
        Path = System.IO.Path.GetFullPath(path);
    }

    public string Path { get; }

    public string JournalPath => System.IO.Path.Combine(Path, RunJournal.FileName);

    public string LockPath => System.IO.Path.Combine(Path, "lock");

    public string LogDirectory(int session) => System.IO.Path.Combine(Path, "out", string.Create(CultureInfo.InvariantCulture, $"s{session}"));

    /// <summary>The log of an attempt: <see cref="LaneLog"/> in its session's <see cref="LogDirectory"/>.</summary>
    public string LaneLog(int session, string prefix, int lane, bool stderr, int log = 0) => LaneLog(LogDirectory(session), prefix, lane, stderr, log);

    /// <summary>The log of <paramref name="lane"/> in generation <paramref name="log"/>: <c>w0-007.out</c>, then
    /// <c>w0-007.1.out</c>, <c>w0-007.2.out</c>… once a task left a process holding the previous one. Workers on
    /// other nodes are given only the log directory, hence static.</summary>
    public static string LaneLog(string logDirectory, string prefix, int lane, bool stderr, int log = 0) =>
        System.IO.Path.Combine(logDirectory, log == 0
            ? string.Create(CultureInfo.InvariantCulture, $"{prefix}{lane:D3}.{(stderr ? "err" : "out")}")
            : string.Create(CultureInfo.InvariantCulture, $"{prefix}{lane:D3}.{log}.{(stderr ? "err" : "out")}"));

    /// <summary>Where a chain of SLURM jobs keeps its batch script and the jobs' outputs.</summary>
    public string JobsDirectory => System.IO.Path.Combine(Path, "jobs");

    /// <summary>The batch script <c>shoal submit</c> writes and each continuation submits again.</summary>
    public string BatchScript => System.IO.Path.Combine(JobsDirectory, "run.sbatch");

    public static string DefaultFor(string taskFile) => taskFile + ".shoal";

    /// <summary>Creates the folder and takes its lock, so two runs never share a journal; waits up to
    /// <paramref name="wait"/> for another shoal to let go of it (the next job of a chain can start while the
    /// last one's processes are still being ended).</summary>
    public void Acquire(TimeSpan wait)
    {
        var giveUp = DateTime.UtcNow + wait;
        while (true)
        {
            try
            {
                Acquire();
                return;
            }
            catch (JournalException e) when (e.InnerException is IOException { HResult: SharingViolation } && DateTime.UtcNow < giveUp)
            {
                Thread.Sleep(500);
            }
        }
    }

    /// <summary>Creates the folder and takes its lock, so two runs never share a journal.</summary>
    public void Acquire()
    {
        try
        {
            Directory.CreateDirectory(Path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new JournalException($"cannot create the run directory {Path}: {e.Message}", e);
        }

        var lockPath = LockPath;
        try
        {
            // .NET takes an flock(LOCK_EX|LOCK_NB) for FileShare.None: released by the kernel if we die.
            _lock = new FileStream(lockPath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException e) when (e.HResult == SharingViolation)
        {
            // ERROR_SHARING_VIOLATION: .NET's flock emulation found the lock taken.
            throw new JournalException($"another shoal is using the run directory {Path} (its lock {lockPath} is held); wait for it to end, or choose another --run-dir", e);
        }
        catch (IOException e)
        {
            throw new JournalException($"cannot write in the run directory {Path}: {e.Message}", e);
        }
        catch (UnauthorizedAccessException e)
        {
            throw new JournalException($"cannot write in the run directory {Path}: {e.Message}", e);
        }
    }

    public void Dispose() => _lock?.Dispose();
}
