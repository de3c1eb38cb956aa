using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using System.Text;
using Shoal.Cluster;
using Shoal.Execution;
using Shoal.Journal;
using Shoal.Protocol;
using Shoal.Running;
using Shoal.Tasks;

/// <summary>
/// The leader against many workers over real TCP (issue 13): the real SlurmLeader (listener, handshake, protocol),
/// run loop and SQLite journal, and W simulated workers on loopback in this process that authenticate, take Start
/// frames and report each task finished DURATION ms later (not the product's worker: no processes). Reports tasks/s,
/// CPU per task (leader and simulated workers together: one process), peak RSS, and dispatch latency: from a
/// worker's Exits frame leaving to the next Start frame reaching it.
/// Usage: dotnet run -c Release --project bench/Dispatch -- tcp [TASKS=200000] [WORKERS=1000] [SLOTS=16] [DURATION_MS=0]
/// </summary>
internal static class TcpBench
{
    public static async Task RunAsync(string[] args)
    {
        var tasks = args.Length > 0 ? int.Parse(args[0], CultureInfo.InvariantCulture) : 200_000;
        var workers = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 1000;
        var slots = args.Length > 2 ? int.Parse(args[2], CultureInfo.InvariantCulture) : 16;
        var durationMs = args.Length > 3 ? int.Parse(args[3], CultureInfo.InvariantCulture) : 0;
        var dir = Directory.CreateTempSubdirectory("shoal-tcp-");
        try
        {
            var list = TaskSources.FromTaskFile(Encoding.ASCII.GetBytes(string.Concat(Enumerable.Repeat("true\n", tasks))), "bench");
            var runDir = new RunDirectory(Path.Combine(dir.FullName, "run"));
            runDir.Acquire();
            using var journal = RunJournal.Open(runDir.JournalPath, create: true);
            var session = journal.BeginSession(0, "bench", Environment.ProcessId, "tcp");
            using var writer = new JournalWriter(journal);
            var loop = new RunLoop(list, new RunOptions { Session = session }, journal, writer, TimeProvider.System);
            var allocation = new SlurmAllocation("1", ["a"], [slots], 0, null, null);
            await using var leader = new SlurmLeader(allocation, loop, writer, runDir, session, "/bin/sh", quiet: true, "127.0.0.1", _ => { });
            leader.Listen();

            var latencies = new ConcurrentBag<double>();
            var sims = new List<SimulatedWorker>();
            for (var w = 0; w < workers; w += 32)
            {
                // At most 64 handshakes at once are accepted (issue 9): join in batches.
                var batch = Enumerable.Range(w, Math.Min(32, workers - w)).Select(i => SimulatedWorker.JoinAsync(leader.Port, leader.Secret, $"n{i}", slots, durationMs, latencies));
                sims.AddRange(await Task.WhenAll(batch));
            }

            // A worker has its Welcome a moment before the leader hands it to the loop: let the last joins arrive
            // before saying no more will come (with none joined yet, that would end the run at once).
            await Task.Delay(1000);

            loop.ExpectNoMoreWorkers();
            var cpu0 = Process.GetCurrentProcess().TotalProcessorTime;
            var clock = Stopwatch.StartNew();
            var outcome = await loop.RunAsync();
            clock.Stop();
            var cpu = Process.GetCurrentProcess().TotalProcessorTime - cpu0;
            writer.Complete();
            if (outcome.Succeeded != tasks)
            {
                throw new InvalidOperationException($"only {outcome.Succeeded} of {tasks} succeeded");
            }

            var sorted = latencies.Order().ToArray();
            double P(double q) => sorted.Length == 0 ? 0 : sorted[Math.Min(sorted.Length - 1, (int)(q * sorted.Length))];
            var hwm = File.ReadLines("/proc/self/status").First(l => l.StartsWith("VmHWM:", StringComparison.Ordinal)).Split(':')[1].Trim();
            Console.WriteLine("| workers × slots | task duration | tasks | seconds | tasks/s | CPU µs per task (leader + simulators) | peak RSS | dispatch latency p50 / p99 / max (ms) |");
            Console.WriteLine("|---|---|---|---|---|---|---|---|");
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {workers} × {slots} | {durationMs} ms | {tasks} | {clock.Elapsed.TotalSeconds:0.00} | {tasks / clock.Elapsed.TotalSeconds:0} | {cpu.TotalMicroseconds / tasks:0.0} | {hwm} | {P(0.5):0.00} / {P(0.99):0.00} / {(sorted.Length == 0 ? 0 : sorted[^1]):0.00} |"));
            foreach (var sim in sims)
            {
                await sim.DisposeAsync();
            }
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    private sealed class SimulatedWorker : IAsyncDisposable
    {
        private readonly TcpClient _client;
        private readonly NetworkStream _stream;
        private readonly SemaphoreSlim _write = new(1, 1);
        private readonly CancellationTokenSource _stop = new();
        private readonly int _durationMs;
        private readonly ConcurrentBag<double> _latencies;
        private readonly Task _reader;
        private readonly Task _heartbeat;
        private long _lastExitSent;

        private SimulatedWorker(TcpClient client, int durationMs, ConcurrentBag<double> latencies)
        {
            _client = client;
            _stream = client.GetStream();
            _durationMs = durationMs;
            _latencies = latencies;
            _reader = Task.Run(ReadAsync);
            _heartbeat = Task.Run(HeartbeatAsync);
        }

        public static async Task<SimulatedWorker> JoinAsync(int port, byte[] secret, string host, int slots, int durationMs, ConcurrentBag<double> latencies)
        {
            var client = new TcpClient { NoDelay = true };
            await client.ConnectAsync("127.0.0.1", port);
            var s = client.GetStream();
            var nonce = Handshake.NewNonce();
            await Frame.WriteAsync(s, MessageType.Hello, Handshake.EncodeHello(nonce), CancellationToken.None);
            var (serverNonce, _) = Handshake.DecodeChallenge((await Frame.ReadAsync(s, CancellationToken.None))!.Value.Payload);
            await Frame.WriteAsync(s, MessageType.Auth, Handshake.EncodeAuth(Handshake.Proof(secret, "worker", serverNonce, nonce)), CancellationToken.None);
            await Frame.WriteAsync(s, MessageType.Register, new RegisterMessage(host, slots, []).Encode(), CancellationToken.None);
            var welcome = (await Frame.ReadAsync(s, CancellationToken.None))!.Value;
            return welcome.Type == MessageType.Welcome ? new SimulatedWorker(client, durationMs, latencies) : throw new InvalidOperationException("no welcome");
        }

        private async Task ReadAsync()
        {
            try
            {
                while (await Frame.ReadAsync(_stream, Frame.MaxLength, _stop.Token) is { } frame)
                {
                    if (frame.Type != MessageType.Start)
                    {
                        continue; // heartbeats; a Shutdown is followed by the close
                    }

                    var sent = Interlocked.Exchange(ref _lastExitSent, 0);
                    if (sent != 0)
                    {
                        _latencies.Add(Stopwatch.GetElapsedTime(sent).TotalMilliseconds);
                    }

                    var requests = StartMessage.Decode(frame.Payload);
                    if (_durationMs > 0)
                    {
                        _ = Task.Delay(_durationMs).ContinueWith(_ => SendExitsAsync(requests), TaskScheduler.Default);
                    }
                    else
                    {
                        await SendExitsAsync(requests);
                    }
                }
            }
            catch (Exception e) when (e is OperationCanceledException or IOException or ObjectDisposedException or ProtocolException)
            {
            }
        }

        private async Task SendExitsAsync(List<LaunchRequest> requests)
        {
            var exits = requests.Select(r => new TaskExit(r.Task, r.Attempt, 0, 0, 0, _durationMs, r.Lane, 0, 0, 0, 0, 0)).ToList();
            await _write.WaitAsync();
            try
            {
                Volatile.Write(ref _lastExitSent, Stopwatch.GetTimestamp());
                await Frame.WriteAsync(_stream, MessageType.Exits, ExitsMessage.Encode(exits), CancellationToken.None);
            }
            catch (Exception e) when (e is IOException or ObjectDisposedException)
            {
            }
            finally
            {
                _write.Release();
            }
        }

        private async Task HeartbeatAsync()
        {
            try
            {
                while (!_stop.IsCancellationRequested)
                {
                    await Task.Delay(2000, _stop.Token);
                    await _write.WaitAsync(_stop.Token);
                    try
                    {
                        await Frame.WriteAsync(_stream, MessageType.Heartbeat, ReadOnlyMemory<byte>.Empty, _stop.Token);
                    }
                    finally
                    {
                        _write.Release();
                    }
                }
            }
            catch (Exception e) when (e is OperationCanceledException or IOException or ObjectDisposedException)
            {
            }
        }

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            _client.Dispose();
            await Task.WhenAll(_reader, _heartbeat).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            _stop.Dispose();
            _write.Dispose();
        }
    }
}
