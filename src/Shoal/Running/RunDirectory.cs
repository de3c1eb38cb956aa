using System.Globalization;
using Shoal.Journal;

namespace Shoal.Running;

/// <summary>
/// The folder of a run: <c>journal.db</c>, a <c>lock</c> held while a run uses it, and <c>out/s&lt;session&gt;/</c>
/// with the lane logs. Default place: beside the task file, named after it (<c>tasks.txt</c> → <c>tasks.txt.shoal</c>).
/// </summary>
public sealed class RunDirectory : IDisposable
{
    private FileStream? _lock;

    public RunDirectory(string path)
    {
        Path = System.IO.Path.GetFullPath(path);
    }

    public string Path { get; }

    public string JournalPath => System.IO.Path.Combine(Path, RunJournal.FileName);

    public string LogDirectory(int session) => System.IO.Path.Combine(Path, "out", string.Create(CultureInfo.InvariantCulture, $"s{session}"));

    public static string DefaultFor(string taskFile) => taskFile + ".shoal";

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

        var lockPath = System.IO.Path.Combine(Path, "lock");
        try
        {
            // .NET takes an flock(LOCK_EX|LOCK_NB) for FileShare.None: released by the kernel if we die.
            _lock = new FileStream(lockPath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException e) when (e.HResult == unchecked((int)0x80070020))
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
