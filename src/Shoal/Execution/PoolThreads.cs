namespace Shoal.Execution;

/// <summary>
/// The .NET thread pool creates its threads on demand, and a failed thread creation ends the process
/// (OutOfMemoryException on a pool thread, nothing to catch). Threads count against the user's process limit
/// (ulimit -u), which a run's own tasks can reach: so a long run fixes the pool's size, creates every thread at its
/// start while the limit still has room, and keeps them (with ThreadsToKeepAlive=-1 in the runtime configuration,
/// an idle pool thread never exits, so none is created again). Spawn failures at the limit are then the tasks'
/// concern only, retried by the run (see RunState).
/// </summary>
public static class PoolThreads
{
    /// <summary>The pool size for a run: as many as cores, at least 4 (the loop, the sockets and timers' callbacks,
    /// the display), at most 16 (more cores do not need more: one loop owns the run).</summary>
    public static int ForRun => Math.Clamp(Environment.ProcessorCount, 4, 16);

    /// <summary>Fixes the pool at <paramref name="threads"/> and creates them now; also starts the timer thread.
    /// Returns the threads that came up within a second (fewer only when the machine refuses threads already).</summary>
    public static int Reserve(int threads)
    {
        ThreadPool.GetMinThreads(out var min, out var io);
        if (threads < min)
        {
            ThreadPool.SetMinThreads(threads, io);
            ThreadPool.SetMaxThreads(threads, Math.Max(io, 1));
        }
        else
        {
            ThreadPool.SetMaxThreads(threads, Math.Max(io, 1));
            ThreadPool.SetMinThreads(threads, io);
        }

        // Each item holds its thread until all have arrived, so the pool must create every one of them (called on
        // a pool thread, which holds one of them: one item fewer, or the last would wait for the timeout).
        var items = Thread.CurrentThread.IsThreadPoolThread ? threads - 1 : threads;
        var arrived = new CountdownEvent(Math.Max(1, items));
        if (items <= 0)
        {
            arrived.Signal();
        }

        var go = new ManualResetEventSlim(); // neither is disposed: an item late past the timeouts may still touch them
        for (var i = 0; i < items; i++)
        {
            ThreadPool.UnsafeQueueUserWorkItem(
                static s =>
                {
                    s.Arrived.Signal();
                    s.Go.Wait(TimeSpan.FromSeconds(2));
                },
                (Arrived: arrived, Go: go),
                preferLocal: false);
        }

        arrived.Wait(TimeSpan.FromSeconds(1));
        var up = threads - arrived.CurrentCount;
        go.Set();
        using (new Timer(static _ => { }, null, 1, Timeout.Infinite))
        {
            // created and dropped: the runtime's timer thread now exists
        }

        return up;
    }
}
