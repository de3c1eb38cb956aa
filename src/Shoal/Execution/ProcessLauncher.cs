using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;

namespace Shoal.Execution;

/// <summary>
/// Runs attempts as real processes: <c>SHELL -c COMMAND</c> in its own process group, stdout and stderr appended to
/// the per-lane log files of <see cref="ProcessLauncherOptions.LogDirectory"/> (one lane runs one task at a time, so
/// an attempt's output is the byte range its lane's log grew by). Several spawning threads, because one thread tops
/// out near half the achievable spawn rate.
/// <para>Exact attribution. Each attempt opens the lane logs itself (in the child, by posix_spawn), so only the task
/// and what it started hold them for writing; Shoal holds them read-only. When the task's main process exits, the
/// rest of its process group is killed (as SLURM does at the end of a step), then Shoal asks the kernel whether any
/// process still has the logs open for writing: a read lease (<c>F_SETLEASE F_RDLCK</c>) is granted only if none
/// does. If one does — a process that left the group (<c>setsid</c>, GNU <c>timeout</c>) — or leftovers had to be
/// killed, the lane moves to a fresh pair of log files (generation + 1, recorded with each attempt), so nothing a
/// finished task left behind can ever write into a later task's range; the holders are then found through /proc
/// and killed. Where leases are not available (some network filesystems), only process-group leftovers are detected.
/// Cost: two opens in the child and four fcntl calls per attempt.</para>
/// </summary>
public sealed class ProcessLauncher : ITaskLauncher
{
    private static readonly string[] OwnVariables = ["SHOAL_TASK_ID", "SHOAL_ATTEMPT", "OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "SHOAL_SECRET"];

    private readonly ProcessLauncherOptions _options;
    private readonly Action<TaskExit> _onExit;
    private readonly byte[] _shell;
    private readonly byte[] _dashC = "-c\0"u8.ToArray();
    private readonly EnvironmentBlock _environment;
    private readonly string? _path;
    private readonly HandOff<LaunchRequest> _queue = new();
    private readonly Thread[] _spawners;
    private readonly Lock _lock = new();
    private readonly Dictionary<int, Running> _running = [];
    private readonly LaneLogs[] _lanes;
    private readonly TimeProvider _time;
    private bool _aborted;
    private int _leasesUnsupported;

    static ProcessLauncher()
    {
        // A lease holder gets SIGIO when someone opens the file for writing while it holds the lease (for the few
        // microseconds of a check): its default action would end Shoal. Tasks get every signal's default back.
        _ = Native.SetSignalDisposition(Native.SIGIO, Native.SIG_IGN);
    }

    public ProcessLauncher(ProcessLauncherOptions options, Action<TaskExit> onExit, TimeProvider? time = null)
    {
        _options = options;
        _onExit = onExit;
        _time = time ?? TimeProvider.System;
        _shell = Encoding.UTF8.GetBytes(options.Shell + "\0");
        _environment = new EnvironmentBlock(OwnVariables, options.ExtraEnvironment);
        _path = options.ExtraEnvironment.FirstOrDefault(e => e.Key == "PATH").Value ?? Environment.GetEnvironmentVariable("PATH");
        _lanes = new LaneLogs[options.Lanes];
        for (var i = 0; i < _lanes.Length; i++)
        {
            _lanes[i] = new LaneLogs();
        }

        Directory.CreateDirectory(options.LogDirectory);
        _spawners = new Thread[Math.Max(1, options.SpawnerThreads)];
        for (var i = 0; i < _spawners.Length; i++)
        {
            _spawners[i] = new Thread(SpawnLoop) { IsBackground = true, Name = $"shoal-spawn-{i}" };
            _spawners[i].Start();
        }
    }

    /// <summary>Lane logs abandoned because a task's leftover still held them (for tests and the summary).</summary>
    public int Rotations { get; private set; }

    public void Launch(LaunchRequest request) => _queue.Add(request);

    /// <summary>Sends <paramref name="signal"/> to the task's process group, and notes that our signal reached it —
    /// unless its main process had already exited (its own exit came first).</summary>
    public void Signal(int task, int signal)
    {
        lock (_lock)
        {
            if (_running.TryGetValue(task, out var run))
            {
                if (!run.Signalled && Native.HasExited(run.Pid))
                {
                    return;
                }

                run.Signalled = true;
                Native.Kill(-run.Pid, signal);
            }
        }
    }

    /// <summary>Starts nothing more (queued launches are dropped, a spawn in progress is killed as soon as it
    /// returns) and SIGKILLs the process group of every running task: a worker whose leader is gone.</summary>
    public void Abort()
    {
        lock (_lock)
        {
            _aborted = true;
            foreach (var run in _running.Values)
            {
                Native.Kill(-run.Pid, Native.SIGKILL);
            }
        }
    }

    private void SpawnLoop()
    {
        using var spawner = new Spawner();
        while (_queue.Take(out var request))
        {
            SpawnOne(spawner, request);
        }
    }

    private void SpawnOne(Spawner spawner, LaunchRequest r)
    {
        if (Volatile.Read(ref _aborted))
        {
            return;
        }

        LaneLogs lane;
        int log;
        try
        {
            lock (_lock)
            {
                lane = _lanes[r.Lane];
                lane.Open(_options.LogDirectory, _options.LogPrefix, r.Lane);
                log = lane.Generation;
            }
        }
        catch (SpawnException e)
        {
            // The lane's log cannot be opened (too many open files, disk full, folder gone): the machine's failure.
            // (Errors that persist make the run loop give the worker up after a while, with this errno's text.)
            _onExit(new TaskExit(r.Task, r.Attempt, e.Errno, 0, _time.GetUtcNow().ToUnixTimeMilliseconds(), 0, r.Lane, 0, 0, 0, 0, SpawnFailed: true));
            return;
        }

        var outStart = Native.LSeek(lane.OutFd, 0, Native.SEEK_END);
        var errStart = Native.LSeek(lane.ErrFd, 0, Native.SEEK_END);
        var startUnixMs = _time.GetUtcNow().ToUnixTimeMilliseconds();
        var startTimestamp = Stopwatch.GetTimestamp();
        var command = new byte[r.Command.Length + 1];
        r.Command.CopyTo(command, 0);
        var env = new List<byte[]>(4)
        {
            Encoding.UTF8.GetBytes($"SHOAL_TASK_ID={r.TaskId}\0"),
            Encoding.UTF8.GetBytes($"SHOAL_ATTEMPT={r.Attempt}\0"),
            Encoding.UTF8.GetBytes($"OMP_NUM_THREADS={r.Cpus}\0"),
        };
        if (r.Gpus is not null)
        {
            env.Add(Encoding.UTF8.GetBytes($"CUDA_VISIBLE_DEVICES={string.Join(',', r.Gpus)}\0"));
        }

        int pid;
        try
        {
            pid = _options.DirectExec && DirectExec.PlainWords(r.Command) is { } words
                ? SpawnDirect(spawner, words, command, env, lane)
                : spawner.Spawn(_shell, [_shell, _dashC, command], _environment, env, lane.OutPath, lane.ErrPath);
        }
        catch (NotFoundException e)
        {
            // As the shell says it (dash: "/bin/sh: 1: NAME: not found", exit 127; "Permission denied", 126).
            AppendTo(lane.ErrPathString, Encoding.UTF8.GetBytes($"{_options.Shell}: 1: {e.Message}\n"));
            var errEnd = Native.LSeek(lane.ErrFd, 0, Native.SEEK_END);
            _onExit(new TaskExit(r.Task, r.Attempt, e.Code, 0, startUnixMs, 0, r.Lane, outStart, 0, errStart, errEnd - errStart, Log: log));
            return;
        }
        catch (SpawnException e) when (IsMachineFailure(e.Errno))
        {
            // Out of processes, memory or descriptors: the machine's failure, not the task's. The run loop retries later.
            _onExit(new TaskExit(r.Task, r.Attempt, e.Errno, 0, startUnixMs, 0, r.Lane, 0, 0, 0, 0, SpawnFailed: true, Log: log));
            return;
        }
        catch (SpawnException e)
        {
            // The shell is missing or not executable: a failed attempt (exit 127, as a shell says), explained in its stderr.
            var message = Encoding.UTF8.GetBytes($"shoal: {e.Message}\n");
            AppendTo(lane.ErrPathString, message);
            var errEnd = Native.LSeek(lane.ErrFd, 0, Native.SEEK_END);
            _onExit(new TaskExit(r.Task, r.Attempt, 127, 0, startUnixMs, 0, r.Lane, outStart, 0, errStart, errEnd - errStart, Log: log));
            return;
        }

        var run = new Running(pid);
        lock (_lock)
        {
            _running[r.Task] = run;
            if (_aborted)
            {
                Native.Kill(-pid, Native.SIGKILL);
            }
        }

        ChildProcesses.Instance.Register(pid, (status, endTimestamp) =>
        {
            bool signalled;
            lock (_lock)
            {
                _running.Remove(r.Task);
                signalled = run.Signalled;
            }

            // Leftovers of the task's process group must not write into the lane after this attempt's range ends.
            var leftovers = Native.Kill(-pid, Native.SIGKILL) == 0;
            var outEnd = Native.LSeek(lane.OutFd, 0, Native.SEEK_END);
            var errEnd = Native.LSeek(lane.ErrFd, 0, Native.SEEK_END);
            var held = !leftovers && StillHeld(lane);
            if (leftovers || held)
            {
                Rotate(lane, log, held);
            }

            var exited = Native.Exited(status);
            _onExit(new TaskExit(
                r.Task,
                r.Attempt,
                exited ? Native.ExitCode(status) : -1,
                exited ? 0 : Native.TermSignal(status),
                startUnixMs,
                (long)Stopwatch.GetElapsedTime(startTimestamp, endTimestamp).TotalMilliseconds,
                r.Lane,
                outStart,
                outEnd - outStart,
                errStart,
                errEnd - errStart,
                Log: log,
                Signalled: signalled));
        });
    }

    /// <summary>Starts a plain-word command as its own argv, found in PATH as the shell would. A file the kernel
    /// cannot execute as it is (a script without #!) goes to the shell, which runs it as a shell script.</summary>
    private int SpawnDirect(Spawner spawner, List<string> words, byte[] command, List<byte[]> env, LaneLogs lane)
    {
        var path = DirectExec.Resolve(words[0], _path) ?? throw new NotFoundException($"{words[0]}: not found", 127);
        var file = Encoding.UTF8.GetBytes(path + "\0");
        var argv = new byte[words.Count][];
        for (var i = 0; i < words.Count; i++)
        {
            argv[i] = Encoding.UTF8.GetBytes(words[i] + "\0");
        }

        try
        {
            return spawner.Spawn(file, argv, _environment, env, lane.OutPath, lane.ErrPath);
        }
        catch (SpawnException e) when (e.Errno == Native.ENOEXEC)
        {
            return spawner.Spawn(_shell, [_shell, _dashC, command], _environment, env, lane.OutPath, lane.ErrPath);
        }
        catch (SpawnException e) when (e.Errno is Native.EACCES or Native.ENOENT or Native.ENOTDIR or Native.EISDIR)
        {
            throw new NotFoundException(e.Errno == Native.ENOENT || e.Errno == Native.ENOTDIR ? $"{words[0]}: not found" : $"{words[0]}: Permission denied", e.Errno is Native.ENOENT or Native.ENOTDIR ? 127 : 126);
        }
    }

    private sealed class NotFoundException(string message, int code) : Exception(message)
    {
        public int Code { get; } = code;
    }

    /// <summary>errno values that say the machine is out of something (processes, memory, descriptors), so that the
    /// same start may well work a moment later.</summary>
    public static bool IsMachineFailure(int errno) => errno is Native.EAGAIN or Native.ENOMEM or Native.EMFILE or Native.ENFILE or Native.EINTR;

    private static void AppendTo(string path, byte[] bytes)
    {
        try
        {
            using var file = new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.ReadWrite);
            file.Write(bytes);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
    }

    /// <summary>Whether some process still has either log of the lane open for writing (a read lease is refused).</summary>
    private bool StillHeld(LaneLogs lane)
    {
        if (Volatile.Read(ref _leasesUnsupported) != 0)
        {
            return false;
        }

        foreach (var fd in (ReadOnlySpan<int>)[lane.OutFd, lane.ErrFd])
        {
            if (Native.Fcntl(fd, Native.F_SETLEASE, Native.F_RDLCK) == 0)
            {
                _ = Native.Fcntl(fd, Native.F_SETLEASE, Native.F_UNLCK);
                continue;
            }

            if (Marshal.GetLastPInvokeError() == Native.EAGAIN)
            {
                return true;
            }

            // EINVAL and the like: this filesystem has no leases; fall back to process-group leftovers only.
            Volatile.Write(ref _leasesUnsupported, 1);
            return false;
        }

        return false;
    }

    /// <summary>Moves the lane to fresh log files; if a process outside the task's group still holds the old ones,
    /// finds and kills it (in the background: it is rare, and scanning /proc must not delay other exits).</summary>
    private void Rotate(LaneLogs lane, int log, bool hunt)
    {
        string outPath, errPath;
        lock (_lock)
        {
            if (lane.Generation != log)
            {
                return;
            }

            // As the kernel names them: what the holders' /proc/PID/fd links show, symlinks resolved.
            outPath = Leftovers.NameOfDescriptor(lane.OutFd) ?? lane.OutPathString;
            errPath = Leftovers.NameOfDescriptor(lane.ErrFd) ?? lane.ErrPathString;
            lane.Close();
            lane.Generation++;
            Rotations++;
        }

        if (hunt)
        {
            _ = Task.Run(() => Leftovers.KillHolders([outPath, errPath]));
        }
    }

    public void Dispose()
    {
        _queue.Complete();
        foreach (var t in _spawners)
        {
            t.Join();
        }

        lock (_lock)
        {
            foreach (var lane in _lanes)
            {
                lane.Close();
            }
        }

        _environment.Dispose();
    }

    private sealed class Running(int pid)
    {
        public int Pid { get; } = pid;

        public bool Signalled { get; set; }
    }

    /// <summary>One lane's log pair of the current generation: the paths children open, and our read-only descriptors.</summary>
    private sealed class LaneLogs
    {
        public int Generation { get; set; }

        public int OutFd { get; private set; } = -1;

        public int ErrFd { get; private set; } = -1;

        public byte[] OutPath { get; private set; } = [];

        public byte[] ErrPath { get; private set; } = [];

        public string OutPathString { get; private set; } = "";

        public string ErrPathString { get; private set; } = "";

        public void Open(string directory, string prefix, int lane)
        {
            if (OutFd >= 0)
            {
                return;
            }

            OutPathString = Shoal.Running.RunDirectory.LaneLog(directory, prefix, lane, stderr: false, Generation);
            ErrPathString = Shoal.Running.RunDirectory.LaneLog(directory, prefix, lane, stderr: true, Generation);
            var outFd = OpenReadOnly(OutPathString);
            int errFd;
            try
            {
                errFd = OpenReadOnly(ErrPathString);
            }
            catch
            {
                _ = Native.Close(outFd);
                throw;
            }

            (OutFd, ErrFd) = (outFd, errFd);
            OutPath = Encoding.UTF8.GetBytes(OutPathString + "\0");
            ErrPath = Encoding.UTF8.GetBytes(ErrPathString + "\0");
        }

        public void Close()
        {
            if (OutFd >= 0)
            {
                _ = Native.Close(OutFd);
                _ = Native.Close(ErrFd);
                (OutFd, ErrFd) = (-1, -1);
            }
        }

        private static unsafe int OpenReadOnly(string path)
        {
            var bytes = Encoding.UTF8.GetBytes(path + "\0");
            fixed (byte* p = bytes)
            {
                // Create it (a task that writes nothing still has a log), then keep only a read-only descriptor.
                var w = Native.Open(p, Native.O_WRONLY | Native.O_CREAT | Native.O_APPEND | Native.O_CLOEXEC, 0b110_100_100);
                if (w < 0)
                {
                    var errno = Marshal.GetLastPInvokeError();
                    throw new SpawnException(errno, $"cannot open {path}: {Marshal.GetPInvokeErrorMessage(errno)}");
                }

                _ = Native.Close(w);
                var fd = Native.Open(p, Native.O_RDONLY | Native.O_CLOEXEC, 0);
                if (fd < 0)
                {
                    var errno = Marshal.GetLastPInvokeError();
                    throw new SpawnException(errno, $"cannot open {path}: {Marshal.GetPInvokeErrorMessage(errno)}");
                }

                return fd;
            }
        }
    }
}
