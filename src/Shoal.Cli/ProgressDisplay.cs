using System.Diagnostics;
using System.Globalization;
using Shoal.Running;
using Shoal.Tasks;
using Spectre.Console;

namespace Shoal.Cli;

/// <summary>
/// Progress on stderr. On a terminal: a live line redrawn four times a second. Elsewhere (a SLURM batch log): one
/// plain line every 10 seconds, so a log of a day-long run stays readable.
/// </summary>
internal sealed class ProgressDisplay : IDisposable
{
    private static readonly TimeSpan PlainInterval = TimeSpan.FromSeconds(10);
    private readonly RunProgress _progress;
    private readonly IAnsiConsole _console;
    private readonly bool _live;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _task;

    private ProgressDisplay(RunProgress progress, IAnsiConsole console, bool live)
    {
        _progress = progress;
        _console = console;
        _live = live;
        _task = Task.Run(LoopAsync);
    }

    public static ProgressDisplay Start(RunProgress progress)
    {
        var live = !Console.IsErrorRedirected && Environment.GetEnvironmentVariable("TERM") is not (null or "dumb");
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
        return new ProgressDisplay(progress, console, live);
    }

    private async Task LoopAsync()
    {
        try
        {
            if (_live)
            {
                await _console.Live(new Markup(Line(markup: true))).AutoClear(true).StartAsync(async ctx =>
                {
                    while (!_stop.IsCancellationRequested)
                    {
                        ctx.UpdateTarget(new Markup(Line(markup: true)));
                        await Task.Delay(250, _stop.Token).ConfigureAwait(false);
                    }
                }).ConfigureAwait(false);
            }
            else
            {
                while (!_stop.IsCancellationRequested)
                {
                    await Task.Delay(PlainInterval, _stop.Token).ConfigureAwait(false);
                    await Console.Error.WriteLineAsync("shoal: " + Line(markup: false)).ConfigureAwait(false);
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    internal string Line(bool markup)
    {
        var p = _progress;
        var elapsed = Stopwatch.GetElapsedTime(p.StartTimestamp);
        var finished = p.Succeeded + p.Failed;
        var rate = elapsed.TotalSeconds > 0 ? finished / elapsed.TotalSeconds : 0;
        var remaining = p.Remaining;
        var eta = rate > 0 ? Duration.Format(TimeSpan.FromSeconds(remaining / rate)) : "?";
        var done = p.AlreadyDone + p.Succeeded;
        var failed = p.AlreadyFailed + p.Failed;
        var failedText = markup && failed > 0 ? $"[red]{failed} failed[/]" : $"{failed} failed";
        return string.Create(CultureInfo.InvariantCulture, $"{done}/{p.Total} done, {failedText}, {p.Running} running, {remaining - p.Running} waiting, {rate:0.0} tasks/s, ETA {eta}, {Duration.Format(elapsed)} elapsed");
    }

    public void Stop()
    {
        _stop.Cancel();
        try
        {
            _task.Wait();
        }
        catch (AggregateException)
        {
        }
    }

    public void Dispose()
    {
        Stop();
        _stop.Dispose();
    }
}
