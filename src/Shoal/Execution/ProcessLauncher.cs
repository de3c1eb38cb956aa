using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;

namespace Shoal.Execution;

/// <summary>
/// Runs attempts as real processes: <c>SHELL -c COMMAND</c> in its own process group, stdout and stderr appended to
/// the per-lane log files of <see cref="ProcessLauncherOptions.LogDirectory"/> (one lane runs one task at a time, so
/// an attempt's output is the byte range its lane's log grew by). When the main process exits, whatever it left in its
/// process group is killed (as SLURM does at the end of a step), so no leftover writes into the next task's range.
/// Several spawning threads, because one thread tops out near half the achievable spawn rate.
/// </summary>
public sealed class ProcessLauncher : ITaskLauncher
{
    private static readonly string[] OwnVariables = ["SHOAL_TASK_ID", "SHOAL_ATTEMPT", "OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES"];

    private readonly ProcessLauncherOptions _options;
    private readonly Action<TaskExit> _onExit;
    private readonly byte[] _shell;
    private readonly byte[] _dashC = "-c\0"u8.ToArray();
    private readonly EnvironmentBlock _environment;
    private readonly BlockingCollection<LaunchRequest> _queue = [];
    private readonly Thread[] _spawners;
    private readonly Lock _lock = new();
    private readonly Dictionary<int, int> _pidOfTask = [];
    private readonly (int Out, int Err)[] _laneFds;
    private readonly TimeProvider _time;
    private bool _aborted;

    public ProcessLauncher(ProcessLauncherOptions options, Action<TaskExit> onExit, TimeProvider? time = null)
    {
        _options = options;
        _onExit = onExit;
        _time = time ?? TimeProvider.System;
        _shell = Encoding.UTF8.GetBytes(options.Shell + "\0");
        _environment = new EnvironmentBlock(OwnVariables, options.ExtraEnvironment);
        _laneFds = new (int, int)[options.Lanes];
        Array.Fill(_laneFds, (-1, -1));
        Directory.CreateDirectory(options.LogDirectory);
        _spawners = new Thread[Math.Max(1, options.SpawnerThreads)];
        for (var i = 0; i < _spawners.Length; i++)
        {
            _spawners[i] = new Thread(SpawnLoop) { IsBackground = true, Name = $"shoal-spawn-{i}" };
            _spawners[i].Start();
        }
    }

    public static string LogPath(string directory, string prefix, int lane, bool stderr) =>
        Path.Combine(directory, string.Create(CultureInfo.InvariantCulture, $"{prefix}{lane:D3}.{(stderr ? "err" : "out")}"));

    public void Launch(LaunchRequest request) => _queue.Add(request);

    /// <summary>Starts nothing more (queued launches are dropped, a spawn in progress is killed as soon as it
    /// returns) and SIGKILLs the process group of every running task: a worker whose leader is gone.</summary>
    public void Abort()
    {
        lock (_lock)
        {
            _aborted = true;
            foreach (var pid in _pidOfTask.Values)
            {
                Native.Kill(-pid, Native.SIGKILL);
            }
        }
    }

    public void Signal(int task, int signal)
    {
        lock (_lock)
        {
            if (_pidOfTask.TryGetValue(task, out var pid))
            {
                Native.Kill(-pid, signal);
            }
        }
    }

    private void SpawnLoop()
    {
        using var spawner = new Spawner();
        foreach (var request in _queue.GetConsumingEnumerable())
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

        int outFd, errFd;
        try
        {
            (outFd, errFd) = LaneFds(r.Lane);
        }
        catch (IOException)
        {
            // The lane's log cannot be opened (disk full, folder gone): the attempt fails without output.
            _onExit(new TaskExit(r.Task, r.Attempt, 127, 0, _time.GetUtcNow().ToUnixTimeMilliseconds(), 0, r.Lane, 0, 0, 0, 0, SpawnFailed: true));
            return;
        }

        var outStart = Native.LSeek(outFd, 0, Native.SEEK_END);
        var errStart = Native.LSeek(errFd, 0, Native.SEEK_END);
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
            pid = spawner.Spawn(_shell, [_shell, _dashC, command], _environment, env, outFd, errFd);
        }
        catch (IOException e)
        {
            // The task could not start at all (shell missing, out of processes): a failed attempt, explained in its stderr.
            var message = Encoding.UTF8.GetBytes($"shoal: {e.Message}\n");
            RandomAccess.Write(new Microsoft.Win32.SafeHandles.SafeFileHandle(errFd, ownsHandle: false), message, errStart);
            _onExit(new TaskExit(r.Task, r.Attempt, 127, 0, startUnixMs, 0, r.Lane, outStart, 0, errStart, message.Length, SpawnFailed: true));
            return;
        }

        lock (_lock)
        {
            _pidOfTask[r.Task] = pid;
            if (_aborted)
            {
                Native.Kill(-pid, Native.SIGKILL);
            }
        }

        ChildProcesses.Instance.Register(pid, (status, endTimestamp) =>
        {
            lock (_lock)
            {
                _pidOfTask.Remove(r.Task);
            }

            // Leftovers of the task's process group must not write into the lane after this attempt's range ends.
            Native.Kill(-pid, Native.SIGKILL);
            var outEnd = Native.LSeek(outFd, 0, Native.SEEK_END);
            var errEnd = Native.LSeek(errFd, 0, Native.SEEK_END);
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
                errEnd - errStart));
        });
    }

    private (int Out, int Err) LaneFds(int lane)
    {
        lock (_lock)
        {
            var fds = _laneFds[lane];
            if (fds.Out < 0)
            {
                fds = (OpenLog(LogPath(_options.LogDirectory, _options.LogPrefix, lane, false)), OpenLog(LogPath(_options.LogDirectory, _options.LogPrefix, lane, true)));
                _laneFds[lane] = fds;
            }

            return fds;
        }
    }

    private static unsafe int OpenLog(string path)
    {
        var bytes = Encoding.UTF8.GetBytes(path + "\0");
        fixed (byte* p = bytes)
        {
            var fd = Native.Open(p, Native.O_WRONLY | Native.O_CREAT | Native.O_APPEND | Native.O_CLOEXEC, 0b110_100_100);
            if (fd < 0)
            {
                throw new IOException($"cannot open {path}: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
            }

            return fd;
        }
    }

    public void Dispose()
    {
        _queue.CompleteAdding();
        foreach (var t in _spawners)
        {
            t.Join();
        }

        lock (_lock)
        {
            foreach (var (o, e) in _laneFds)
            {
                if (o >= 0)
                {
                    _ = Native.Close(o);
                    _ = Native.Close(e);
                }
            }

            Array.Fill(_laneFds, (-1, -1));
        }

        _environment.Dispose();
        _queue.Dispose();
    }
}
