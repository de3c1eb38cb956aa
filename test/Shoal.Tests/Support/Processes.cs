namespace Shoal.Tests.Support;

public static class Processes
{
    /// <summary>True while <paramref name="pid"/> runs; a zombie waiting for its reaper counts as gone.</summary>
    public static bool Alive(int pid)
    {
        try
        {
            var text = File.ReadAllText($"/proc/{pid}/stat");
            return text[(text.LastIndexOf(')') + 2)] != 'Z';
        }
        catch (IOException)
        {
            return false;
        }
    }
}
